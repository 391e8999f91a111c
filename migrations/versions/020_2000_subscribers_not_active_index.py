"""A partial index of the subscribers who are not active: an audience count without a
segment subtracts them from the lists' members instead of reading every subscriber.

Revision ID: 2000
Revises: 1900
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2000"
down_revision: str | None = "1900"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_subscribers_not_active", "subscribers", ["id"],
                    postgresql_where=sa.text("status <> 'active'"),
                    sqlite_where=sa.text("status <> 'active'"))


def downgrade() -> None:
    op.drop_index("ix_subscribers_not_active", table_name="subscribers")
