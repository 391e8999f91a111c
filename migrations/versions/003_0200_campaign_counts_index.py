"""Index deliveries by (campaign_id, status): exact campaign counts without a table scan.

Revision ID: 0200
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0200"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deliveries_campaign_status", "deliveries", ["campaign_id", "status"])
    op.create_index("ix_batches_status_claimed", "batches", ["status", "claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_status_claimed", table_name="batches")
    op.drop_index("ix_deliveries_campaign_status", table_name="deliveries")
