"""Indexes for the admin's subscriber search: prefix matches on address and names.

On PostgreSQL the indexes use `varchar_pattern_ops`, so `LIKE 'abc%'` can use them
whatever the database collation is; names are indexed lower-cased (the search is
case-insensitive). SQLite gets plain indexes on the same expressions.

Revision ID: 0500
Revises: 0200
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0500"
down_revision: str | None = "0200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_subscribers_email_key_prefix",
        "subscribers",
        ["email_key"],
        postgresql_ops={"email_key": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_subscribers_first_name_prefix",
        "subscribers",
        [sa.text("lower(first_name) varchar_pattern_ops")]
        if op.get_bind().dialect.name == "postgresql"
        else [sa.text("lower(first_name)")],
    )
    op.create_index(
        "ix_subscribers_last_name_prefix",
        "subscribers",
        [sa.text("lower(last_name) varchar_pattern_ops")]
        if op.get_bind().dialect.name == "postgresql"
        else [sa.text("lower(last_name)")],
    )


def downgrade() -> None:
    op.drop_index("ix_subscribers_last_name_prefix", table_name="subscribers")
    op.drop_index("ix_subscribers_first_name_prefix", table_name="subscribers")
    op.drop_index("ix_subscribers_email_key_prefix", table_name="subscribers")
