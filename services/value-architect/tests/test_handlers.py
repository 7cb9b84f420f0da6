# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The handler's work, and what the service publishes for each event it consumes."""

from event_chassis.testing import TestService

from value_architect import events, models
from value_architect.handlers import handle
from value_architect.settings import Settings

REQUEST = events.ValueModelRequested(
    company_name="Acme Corp",
    industry="Manufacturing",
)


async def test_handle_marks_the_request_handled_and_points_back_to_it(
    service: TestService,
) -> None:
    database = service.service.database
    assert database is not None
    async with database.transaction() as session:
        result = await handle(REQUEST, session)
    async with database.transaction() as session:
        saved = await session.get(models.Request, REQUEST.event_id)

    assert saved is not None
    assert saved.status == "handled"
    assert (result.company_name, result.industry) == ("Acme Corp", "Manufacturing")
    assert result.source_event_id == REQUEST.event_id


async def test_a_message_delivered_twice_is_handled_once(
    service: TestService, settings: Settings
) -> None:
    for _ in range(2):  # as after a producer's retry, or a rebalance
        await service.send(settings.consumes_topic, REQUEST, headers={"message-id": "m-1"})

    assert await service.publish_outbox() == 1


async def test_each_event_gets_one_result_keyed_like_it(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, REQUEST, key=b"acme")
    await service.publish_outbox()  # the answer leaves through the outbox

    [result] = service.published(settings.produces_topic)
    assert result.json()["source_event_id"] == str(REQUEST.event_id)
    assert result.key == b"acme"
    assert not service.published(settings.dead_letter_topic)


async def test_an_event_missing_a_field_is_dead_lettered(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, {"company_name": "Acme Corp"})

    [dead] = service.published(settings.dead_letter_topic)
    assert dead.headers["x-dead-letter-error"] == "ValidationError"
    assert "industry" in dead.headers["x-dead-letter-reason"]
    assert not service.published(settings.produces_topic)


def test_the_asyncapi_document_shows_every_topic_and_schema(
    service: TestService, settings: Settings
) -> None:
    document = service.service.asyncapi().to_specification().to_jsonable()

    addresses = {channel["address"] for channel in document["channels"].values()}
    topics = {settings.consumes_topic, settings.produces_topic, settings.dead_letter_topic}
    assert topics <= addresses
    schemas = document["components"]["schemas"]
    assert {
        "ValueModelRequested",
        "ValueModelCreated",
    } <= set(schemas)
