"""Saved segments (`segments`), a campaign's `segment_id`, and on PostgreSQL a GIN index
on `(attributes::jsonb)` for segments on subscriber attributes.

Revision ID: 1600
Revises: 1700
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import service.db

revision: str = "1600"
down_revision: str | None = "1700"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("segment", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", service.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", service.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
    )
    # No foreign key (see models.Campaign.segment_id): a plain ADD COLUMN on both.
    op.add_column("campaigns", sa.Column("segment_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_subscribers_attributes_gin", "subscribers",
            [sa.text("(CAST(attributes AS JSONB)) jsonb_path_ops")],
            postgresql_using="gin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_subscribers_attributes_gin", table_name="subscribers")
    op.drop_column("campaigns", "segment_id")
    op.drop_table("segments")
