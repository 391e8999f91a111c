"""Subscribers get a county and a time zone (from their postal code) and tags, one row per
tag in `subscriber_tags`, indexed by tag for segments.

Revision ID: 1100
Revises: 1000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "1100"
down_revision: str | None = "1000"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite 3.35+ drops columns too): a batch copy
    # of `subscribers` would lose its expression indexes on SQLite.
    op.add_column("subscribers", sa.Column("county", sa.String(100), nullable=False,
                                           server_default=""))
    op.add_column("subscribers", sa.Column("timezone", sa.String(64), nullable=False,
                                           server_default=""))
    op.create_index("ix_subscribers_county", "subscribers", ["county"])
    op.create_table(
        "subscriber_tags",
        sa.Column("subscriber_id", BigId, nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "tag"),
    )
    op.create_index("ix_subscriber_tags_tag", "subscriber_tags", ["tag", "subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_subscriber_tags_tag", table_name="subscriber_tags")
    op.drop_table("subscriber_tags")
    op.drop_index("ix_subscribers_county", table_name="subscribers")
    op.drop_column("subscribers", "timezone")
    op.drop_column("subscribers", "county")
