# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The events this service consumes and produces.

Every event carries a `schema_version`; a consumer rejects versions it does not
know (they go to the dead-letter topic) instead of guessing at their meaning.
Unknown extra fields are ignored, so producers can add fields without
breaking older consumers.
"""

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """Fields common to every event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class ValueModelSubject(BaseModel):
    """What the sample flow is about; replace with your own domain fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    company_name: str = Field(min_length=1, max_length=200, examples=["Acme Corp"])
    industry: str = Field(min_length=1, max_length=100, examples=["Manufacturing"])


class ValueModelRequested(Event, ValueModelSubject):
    """Consumed from `value-model.requested`."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ValueModelCreated(Event, ValueModelSubject):
    """Produced to `value-model.created` once a request is handled."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source_event_id: UUID
