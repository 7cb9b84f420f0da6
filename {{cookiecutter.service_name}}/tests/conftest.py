# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""The service on the chassis' in-memory harness: no Kafka, Consul or collector needed{% if cookiecutter.database == "postgres" %}
(PostgreSQL is real: a throwaway server){% endif %}."""

from collections.abc import AsyncIterator{% if cookiecutter.database == "postgres" %}, Iterator{% endif %}

import pytest
from event_chassis.testing import TestService, test_settings
{%- if cookiecutter.database == "postgres" %}
from event_chassis.testing_postgres import new_database, throwaway_postgres
{%- endif %}

from {{ cookiecutter.package_name }}.service import create_service
from {{ cookiecutter.package_name }}.settings import Settings


{% if cookiecutter.database == "postgres" -%}
@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL from this machine's server binaries, for the whole run."""
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
async def settings(postgres: str) -> Settings:
    """A new database for each test; TestService migrates it as the service's start does."""
    return test_settings(Settings, database_url=await new_database(postgres))
{%- else -%}
@pytest.fixture
def settings() -> Settings:
    return test_settings(Settings)
{%- endif %}


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[TestService]:
    async with TestService(create_service(settings)) as service:
        yield service
