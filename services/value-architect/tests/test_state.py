# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service's state in PostgreSQL follows its events, whatever fails on the way."""

from event_chassis.testing import TestService

from value_architect import events, models
from value_architect.settings import Settings


async def test_a_handled_request_is_saved_as_handled(
    service: TestService, settings: Settings
) -> None:
    event = events.ValueModelRequested(company_name="Acme Corp", industry="Retail")

    await service.send(settings.consumes_topic, event)

    database = service.service.database
    assert database is not None
    async with database.transaction() as session:
        saved = await session.get(models.Request, event.event_id)
    assert saved is not None
    assert (saved.status, saved.company_name) == ("handled", "Acme Corp")
