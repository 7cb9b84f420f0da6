# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service on the chassis' in-memory harness: no Kafka, Consul or collector needed
(PostgreSQL is real: a throwaway server)."""

from collections.abc import AsyncIterator, Iterator

import pytest
from event_chassis.testing import TestService, test_settings
from event_chassis.testing_postgres import new_database, throwaway_postgres

from value_architect.service import create_service
from value_architect.settings import Settings


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL from this machine's server binaries, for the whole run."""
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
async def settings(postgres: str) -> Settings:
    """A new database for each test; TestService migrates it as the service's start does."""
    return test_settings(Settings, database_url=await new_database(postgres))


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[TestService]:
    async with TestService(create_service(settings)) as service:
        yield service
