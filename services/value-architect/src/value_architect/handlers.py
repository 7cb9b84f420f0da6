# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service's work: plain functions from one event to the next, free of Kafka.

The chassis calls `handle` for every event on `value-model.requested` and publishes what
it returns (return None to publish nothing). An invalid event, or an error that
persists after retries, sends the event to `value-architect.dead-letter`; raise
`event_chassis.PoisonMessageError` to send it there at once, and
`event_chassis.DependencyUnavailableError` when something you call is down: the event
then waits (its partition paused) instead of being dead-lettered.

`async def` handlers run on the event loop, beside every other consumer, the HTTP API
and Kafka's heartbeats: await your I/O (httpx.AsyncClient, asyncpg) and never block. A
plain `def` handler runs on a worker thread, as FastAPI runs `def` endpoints: use it
for blocking calls (a synchronous SDK or driver); each event then costs a thread hop.
"""

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from . import events, models

# Each line logged while an event is handled carries its request's trace_id, in the
# JSON on stdout and in the log store, next to the request's trace in Jaeger. A line per
# event costs more than this handler's own work (about 40 µs): so at DEBUG, which
# LOG_LEVELS=<this package>=DEBUG turns on for this code alone (the local platform does).
logger = logging.getLogger(__name__)


async def handle(
    event: events.ValueModelRequested, session: AsyncSession
) -> events.ValueModelCreated:
    """Mark the request handled and answer it. It runs once per message, in one transaction
    with the chassis' inbox; the answer is published once that transaction commits."""
    logger.debug("Handling %s for %s", event.event_id, event.company_name)
    request = await session.get(models.Request, event.event_id)
    if request is None:  # from another producer than this service's API
        request = models.Request(
            id=event.event_id, company_name=event.company_name, industry=event.industry
        )
        session.add(request)
    request.status, request.handled_at = "handled", datetime.now(UTC)
    return events.ValueModelCreated(
        company_name=event.company_name,
        industry=event.industry,
        source_event_id=event.event_id,
    )
