# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The requests table (models.Request).

Revision ID: value_architect_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "value_architect_0001"
down_revision = None
branch_labels = ("value_architect",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("company_name", sa.Text, nullable=False),
        sa.Column("industry", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("handled_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("requests")
