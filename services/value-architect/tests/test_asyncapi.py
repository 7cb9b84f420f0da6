"""The AsyncAPI document FastStream generates describes every topic and schema."""

from typing import Any

from value_architect.asyncapi import build_specification
from value_architect.config import Settings


def test_document_lists_every_topic_with_its_schema(settings: Settings) -> None:
    document: dict[str, Any] = build_specification(settings).to_specification().to_jsonable()

    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        settings.consumes_topic,
        settings.produces_topic,
        settings.dead_letter_topic,
    }
    actions = {
        (operation["action"], operation["channel"]["$ref"].split("/")[-1].split(":")[0])
        for operation in document["operations"].values()
    }
    assert ("receive", settings.consumes_topic) in actions
    assert ("send", settings.produces_topic) in actions
    schemas = document["components"]["schemas"]
    consumed = schemas["ValueModelRequested"]["properties"]
    produced = schemas["ValueModelCreated"]["properties"]
    assert {"schema_version", "event_id", "company_name", "industry"} <= set(consumed)
    assert {"schema_version", "source_event_id"} <= set(produced)
