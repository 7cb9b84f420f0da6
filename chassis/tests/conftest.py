"""The example service on the in-memory harness."""

from collections.abc import AsyncIterator

import pytest

from event_chassis.testing import TestService, test_settings

from . import example


@pytest.fixture(autouse=True)
def fresh_behaviour() -> None:
    example.behaviour.reset()


@pytest.fixture
def settings() -> example.Settings:
    return test_settings(example.Settings)


@pytest.fixture
async def service(settings: example.Settings) -> AsyncIterator[TestService]:
    async with TestService(example.create_service(settings)) as service:
        yield service
