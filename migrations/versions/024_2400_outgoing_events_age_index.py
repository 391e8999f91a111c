"""Index outgoing webhook events by age, so that the workers' recovery pass finds the
events older than the delivery log keeps without reading the whole table each time
(BRIN on PostgreSQL: events are written in time order).

Revision ID: 2400
Revises: 2300
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2400"
down_revision: str | None = "2300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outgoing_events_created_at", "outgoing_events", ["created_at"],
                    postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_outgoing_events_created_at", table_name="outgoing_events")
