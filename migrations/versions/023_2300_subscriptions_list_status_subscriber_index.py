"""The index of subscriptions by list and status also holds the subscriber: counting the
people of several lists (each once) and asking whether a person is a confirmed member of
a list are then answered from the index alone, without reading the rows.

Revision ID: 2300
Revises: 2200
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2300"
down_revision: str | None = "2200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_subscriptions_list_status_subscriber", "subscriptions",
                    ["list_id", "status", "subscriber_id"])
    op.drop_index("ix_subscriptions_list_status", table_name="subscriptions")


def downgrade() -> None:
    op.create_index("ix_subscriptions_list_status", "subscriptions", ["list_id", "status"])
    op.drop_index("ix_subscriptions_list_status_subscriber", table_name="subscriptions")
