"""A campaign's call to action (`action_url`) and its figures per subscriber locale and
state (`campaign_breakdowns`, kept by the webhook job).

Revision ID: 1400
Revises: 1500
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1400"
down_revision: str | None = "1500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("action_url", sa.String(2000), nullable=False,
                                   server_default=""))
    op.create_table(
        "campaign_breakdowns",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("dimension", sa.String(10), nullable=False),
        sa.Column("key", sa.String(10), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("unique_opens", sa.BigInteger(), nullable=False),
        sa.Column("unique_clicks", sa.BigInteger(), nullable=False),
        sa.Column("actions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "dimension", "key",
                                name=op.f("pk_campaign_breakdowns")),
    )


def downgrade() -> None:
    op.drop_table("campaign_breakdowns")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("action_url")
