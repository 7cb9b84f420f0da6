"""The garbage collector: collecting less often, and never start-up's objects once ready."""

import asyncio
import gc
from collections.abc import Iterator

import pytest
from faststream.kafka import TestKafkaBroker

from event_chassis import runtime

from .example import Settings, create_service


@pytest.fixture(autouse=True)
def collector_as_before() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def test_start_up_objects_are_frozen_once_the_service_is_ready(settings: Settings) -> None:
    service = create_service(settings)
    async with TestKafkaBroker(service.broker), service.app.router.lifespan_context(service.app):
        assert gc.get_threshold() == runtime.THRESHOLDS
        assert gc.get_freeze_count() == 0  # not ready yet: start-up is not over

        for component in list(service.readiness.problems):  # connected, in the group
            service.readiness.ok(component)
        for _ in range(100):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.01)

        assert gc.get_freeze_count() > 100_000  # FastAPI, pydantic, OpenTelemetry, ...


async def test_gc_tuning_can_be_switched_off(settings: Settings) -> None:
    """GC_TUNING=false: CPython's thresholds stay, and nothing is frozen once ready."""
    before = gc.get_threshold()
    service = create_service(settings.model_copy(update={"gc_tuning": False}))
    async with TestKafkaBroker(service.broker), service.app.router.lifespan_context(service.app):
        for component in list(service.readiness.problems):
            service.readiness.ok(component)
        await asyncio.sleep(0.2)

        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
