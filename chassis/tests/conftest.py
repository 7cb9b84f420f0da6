"""The example service on the in-memory harness; a throwaway PostgreSQL for the tests
of the outbox, the inbox and the relay (one server per session, a database per test)."""

from collections.abc import AsyncIterator, Iterator

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    from event_chassis.testing_postgres import throwaway_postgres

    with throwaway_postgres() as dsn:
        yield dsn


@pytest.fixture
async def database_url(postgres_server: str) -> str:
    """A new database on the session's server, for one test."""
    from event_chassis.testing_postgres import new_database

    return await new_database(postgres_server)
