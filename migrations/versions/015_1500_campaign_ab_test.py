"""A/B subject tests: a campaign's test set-up, status, winner and decision time; the
variant of each batch and delivery of the test's sample; batches may be `held` (the rest
of the audience, waiting for the winner: a value of the string-stored batch status, so no
column changes for it).

Revision ID: 1500
Revises: 1600
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "1500"
down_revision: str | None = "1600"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("ab_test", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ab_status", sa.String(10), server_default="",
                                   nullable=False))
        batch.add_column(sa.Column("ab_winner", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ab_decide_at", service.db.UTCDateTime(timezone=True),
                                   nullable=True))
    # Nullable and without a default: adding them rewrites no row of a large ledger.
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("variant", sa.SmallInteger(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("variant", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("variant")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("variant")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("ab_decide_at")
        batch.drop_column("ab_winner")
        batch.drop_column("ab_status")
        batch.drop_column("ab_test")
