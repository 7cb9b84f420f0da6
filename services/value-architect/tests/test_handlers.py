"""The Kafka handler: the work, and the event it produces."""

import json
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker, KafkaResponse

from value_architect.config import Settings
from value_architect.events import ValueModelRequested
from value_architect.handlers import commit, handle

from .conftest import Recorded


def test_handle_carries_the_subject_and_the_source_event() -> None:
    event = ValueModelRequested(company_name="Acme", industry="Retail", event_id=uuid4())

    result = handle(event)

    assert (result.company_name, result.industry) == ("Acme", "Retail")
    assert result.source_event_id == event.event_id
    assert result.event_id != event.event_id


async def test_consumed_event_produces_one_event_keyed_like_the_request(
    broker: KafkaBroker, settings: Settings, recorded: Recorded
) -> None:
    event = ValueModelRequested(company_name="Acme", industry="Retail")

    await broker.publish(event, settings.consumes_topic, key=b"acme-key")

    [message] = recorded[settings.produces_topic]
    payload = json.loads(message.body)
    assert payload["source_event_id"] == str(event.event_id)
    record = message.raw_message
    assert not isinstance(record, tuple)
    assert record.key == b"acme-key"
    assert not recorded[settings.dead_letter_topic]


async def test_unknown_extra_fields_are_ignored(
    broker: KafkaBroker, settings: Settings, recorded: Recorded
) -> None:
    event = {"company_name": "Acme", "industry": "Retail", "added_later": [1, 2]}

    await broker.publish(event, settings.consumes_topic)

    assert len(recorded[settings.produces_topic]) == 1


async def test_a_batch_is_handled_message_by_message_and_keyed_per_result(
    broker: KafkaBroker, settings: Settings, recorded: Recorded
) -> None:
    await broker.publish_batch(
        KafkaResponse({"company_name": "Acme", "industry": "Retail"}, key=b"a"),
        KafkaResponse(b"not json", key=b"b"),
        KafkaResponse({"company_name": "Globex", "industry": "Energy"}, key=b"c"),
        topic=settings.consumes_topic,
    )

    results = recorded[settings.produces_topic]
    assert [json.loads(message.body)["company_name"] for message in results] == ["Acme", "Globex"]
    assert [message.raw_message.key for message in results] == [b"a", b"c"]  # type: ignore[union-attr]
    assert {message.headers["content-type"] for message in results} == {"application/json"}
    [dead] = recorded[settings.dead_letter_topic]
    assert dead.body == b"not json"


async def test_a_commit_kafka_refuses_is_a_warning_and_the_batch_comes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Rebalanced:
        async def ack(self) -> None:
            raise RuntimeError("the group has rebalanced")

    await commit(Rebalanced())  # type: ignore[arg-type]

    assert "will be consumed again" in caplog.text
