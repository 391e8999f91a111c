"""On PostgreSQL the address index (`ix_subscribers_email_key_prefix`, the admin's prefix
search) carries the subscriber's id, so that an audience count finds the subscriber of
each suppressed address from the index alone instead of one heap read each (100,000
suppressions at ten million subscribers: `docs/benchmarks.md`). SQLite has no INCLUDE:
nothing changes there.

The new index is built before the old one is dropped, so the search never goes without
one; building it blocks writes to `subscribers` for as long as it takes (about 10 s per
ten million subscribers on a 2-core machine).

Revision ID: 2600
Revises: 2500
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2600"
down_revision: str | None = "2500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_subscribers_email_key_prefix"


def _rebuild(include: list[str]) -> None:
    op.create_index(f"{NAME}_new", "subscribers", ["email_key"],
                    postgresql_ops={"email_key": "varchar_pattern_ops"},
                    postgresql_include=include)
    op.drop_index(NAME, table_name="subscribers")
    op.execute(f"ALTER INDEX {NAME}_new RENAME TO {NAME}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild([])
