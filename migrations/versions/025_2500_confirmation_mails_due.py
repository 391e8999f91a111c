"""Confirmation mails of signups are sent by the workers' watch pass from their rows:
`not_before` (when the row may be sent, or tried again) and `attempts`, with an index
of the rows still queued.

Rows written before this revision have no `not_before`: their jobs are in Redis already
and send them as before; the watch pass never picks them up.

Revision ID: 2500
Revises: 2400
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "2500"
down_revision: str | None = "2400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("result = 'queued'")


def upgrade() -> None:
    # Plain ADD COLUMN on both backends (SQLite has it too): no table copy.
    op.add_column("confirmation_mails", sa.Column(
        "not_before", service.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("confirmation_mails", sa.Column(
        "attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_confirmation_mails_due", "confirmation_mails", ["not_before"],
                    postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade() -> None:
    op.drop_index("ix_confirmation_mails_due", table_name="confirmation_mails")
    op.drop_column("confirmation_mails", "attempts")  # SQLite: DROP COLUMN since 3.35
    op.drop_column("confirmation_mails", "not_before")
