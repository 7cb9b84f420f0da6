"""event-chassis: the transactional outbox and the idempotent inbox.

The outbox's column names are those Debezium's outbox event router reads (`id`,
`aggregatetype`, `aggregateid`, `type`, `payload`, `tracingspancontext`), so a team can
switch the relay to change data capture without a migration. `txid` is the writing
transaction's id: the relay publishes a row only once every transaction that started
before it has ended, so a row never overtakes one committed later with a lower position.

Revision ID: event_chassis_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "event_chassis_0001"
down_revision = None
branch_labels = ("event_chassis",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("position", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("aggregatetype", sa.Text, nullable=False),  # the topic
        sa.Column("aggregateid", sa.Text),  # the key
        sa.Column("type", sa.Text, nullable=False),  # the event's type
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("tracingspancontext", sa.Text),  # traceparent=... (properties format)
        sa.Column("bucket", sa.Integer, nullable=False),  # of the key: one relay at a time
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("dead_lettered", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    # SQLAlchemy has no xid8 type: the writer's transaction id, set by PostgreSQL.
    op.execute(
        "ALTER TABLE event_outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
    )
    op.create_index(
        "event_outbox_unpublished",
        "event_outbox",
        ["bucket", "position"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    # The relay listens; NOTIFY is delivered when the writing transaction commits.
    op.execute(
        "CREATE FUNCTION event_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('event_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER event_outbox_notify AFTER INSERT ON event_outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_notify()"
    )
    op.create_table(
        "event_inbox",
        sa.Column("consumer_group", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("event_inbox_received_at", "event_inbox", ["received_at"])


def downgrade() -> None:
    op.drop_table("event_inbox")
    op.execute("DROP TRIGGER event_outbox_notify ON event_outbox")
    op.execute("DROP FUNCTION event_outbox_notify()")
    op.drop_table("event_outbox")
