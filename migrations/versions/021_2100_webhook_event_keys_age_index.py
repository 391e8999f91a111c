"""Index the Event Webhook's keys by age, so that keys older than SendGrid's retries are
pruned without a scan (BRIN on PostgreSQL: keys are inserted in time order).

Revision ID: 2100
Revises: 2000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2100"
down_revision: str | None = "2000"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_webhook_event_keys_received_at", "webhook_event_keys", ["received_at"],
                    postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_webhook_event_keys_received_at", table_name="webhook_event_keys")
