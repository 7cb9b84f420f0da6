# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service's state in PostgreSQL: one row per request, from accepted to handled.

Change it with a new Alembic revision in migrations/versions (the chassis applies what
is missing at start): `alembic revision -m "..."`, or write it by hand like 0001.
"""

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[UUID] = mapped_column(primary_key=True)  # the request event's id
    company_name: Mapped[str]
    industry: Mapped[str]
    status: Mapped[str] = mapped_column(default="accepted")  # accepted, then handled
    accepted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
