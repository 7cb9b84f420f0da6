# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service on the chassis' in-memory harness: no Kafka, Consul or collector needed."""

from collections.abc import AsyncIterator

import pytest
from event_chassis.testing import TestService, test_settings

from value_architect.service import create_service
from value_architect.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return test_settings(Settings)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[TestService]:
    async with TestService(create_service(settings)) as service:
        yield service
