"""Deliveries without foreign keys: freezing an audience is a million-row INSERT.

PostgreSQL checks each foreign key with a per-row trigger. Measured on 1M recipients
(`EXPLAIN ANALYZE` of the freeze statement, 2-core machine): 17.4 s with the three keys,
6.5 s without. The rows a freeze writes name the campaign and batches created in the same
transaction and subscribers it just selected; campaigns and batches are never deleted;
erasing a subscriber sets their deliveries' `subscriber_id` to NULL itself
(`subscriptions.gdpr.erase`), which is what `ON DELETE SET NULL` did.

Revision ID: 0700
Revises: 0600
"""

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0700"
down_revision: str | None = "0600"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = [
    ("fk_deliveries_campaign_id_campaigns", "campaigns", "campaign_id", "CASCADE"),
    ("fk_deliveries_batch_id_batches", "batches", "batch_id", "SET NULL"),
    ("fk_deliveries_subscriber_id_subscribers", "subscribers", "subscriber_id", "SET NULL"),
]


@contextmanager
def _rebuilding_on_sqlite() -> Iterator[None]:
    """SQLite drops a key by copying the table, reflecting the tables it references;
    SQLAlchemy cannot reflect the expression indexes of `subscribers` (migration 0500)
    and says so. They are not touched: only `deliveries` is rebuilt."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        yield


def upgrade() -> None:
    with _rebuilding_on_sqlite(), op.batch_alter_table("deliveries") as batch:
        for name, _table, _column, _ondelete in KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    # Rows that name an erased subscriber would break the restored key.
    bind.execute(sa.text(
        "UPDATE deliveries SET subscriber_id = NULL WHERE subscriber_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.id = deliveries.subscriber_id)"
    ))
    with _rebuilding_on_sqlite(), op.batch_alter_table("deliveries") as batch:
        for name, table, column, ondelete in KEYS:
            batch.create_foreign_key(name, table, [column], ["id"], ondelete=ondelete)
