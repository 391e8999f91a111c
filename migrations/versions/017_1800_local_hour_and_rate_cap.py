"""Local-hour delivery and send-rate caps: a campaign's `send_at_local` and
`max_per_minute`, a batch's `timezone`, `not_before` and `deferrals`.

Revision ID: 1800
Revises: 1400
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.db import UTCDateTime


revision: str = "1800"
down_revision: str | None = "1400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (nullable or with a server default: no rewrite
    # of `batches` on PostgreSQL).
    op.add_column("campaigns", sa.Column("send_at_local", sa.String(16), nullable=False,
                                         server_default=""))
    op.add_column("campaigns", sa.Column("max_per_minute", sa.Integer(), nullable=True))
    op.add_column("batches", sa.Column("timezone", sa.String(64), nullable=False,
                                       server_default=""))
    op.add_column("batches", sa.Column("not_before", UTCDateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("deferrals", sa.Integer(), nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    op.drop_column("batches", "deferrals")
    op.drop_column("batches", "not_before")
    op.drop_column("batches", "timezone")
    op.drop_column("campaigns", "max_per_minute")
    op.drop_column("campaigns", "send_at_local")
