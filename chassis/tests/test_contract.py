"""The service's contract: its AsyncAPI document as committed, served and checked."""

from pathlib import Path

import pytest
import yaml

from event_chassis import contract
from event_chassis.testing import TestService

from . import example


def test_the_contract_says_what_travels_on_each_topic_and_not_where() -> None:
    document = contract.document(example.create_service())

    assert "servers" not in document
    assert all("servers" not in channel for channel in document["channels"].values())
    assert document["x-dead-letter-topic"] == "example.dead-letter"
    [receive] = [op for op in document["operations"].values() if op["action"] == "receive"]
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == ["example"]
    consumed = document["components"]["messages"]
    payloads = [message["payload"] for message in consumed.values()]
    # One event per Kafka record, not FastStream's batch of them.
    assert {"$ref": "#/components/schemas/Requested"} in payloads
    assert all(
        schema.get("type") != "array" for schema in document["components"]["schemas"].values()
    )


def test_the_committed_form_is_the_same_every_time() -> None:
    texts = {contract.to_yaml(contract.document(example.create_service())) for _ in range(3)}

    [text] = texts
    assert text.startswith("# Team-owned")
    assert yaml.safe_load(text)["asyncapi"].startswith("3.")


async def test_the_service_serves_it_next_to_openapi(service: TestService) -> None:
    as_json = await service.client.get("/asyncapi.json")
    as_yaml = await service.client.get("/asyncapi.yaml")

    assert as_json.status_code == as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json()
    assert as_json.json() == contract.document(service.service)


def test_write_then_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    factory = ["--factory", "tests.example:create_service"]
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))

    assert contract.main(["check", *factory]) == 1  # nothing committed yet
    assert contract.main(["write", *factory]) == 0
    assert contract.main(["check", *factory]) == 0
    path = tmp_path / contract.PATH
    path.write_text(path.read_text().replace("example.created", "example.renamed"))
    assert contract.main(["check", *factory]) == 1
