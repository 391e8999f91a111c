"""Lists get a welcome mail (en/es), each welcome is recorded once per person and list
before it is sent, and campaigns may be shown in the public archive.

Revision ID: 1300
Revises: 1100
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "1300"
down_revision: str | None = "1100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mailing_lists") as batch:
        batch.add_column(sa.Column("welcome", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("archive", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "welcome_mails",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("claimed_at", service.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_welcome_mails_subscriber_id_subscribers")),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_lists.id"], ondelete="CASCADE",
                                name=op.f("fk_welcome_mails_list_id_mailing_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welcome_mails")),
        sa.UniqueConstraint("subscriber_id", "list_id",
                            name=op.f("uq_welcome_mails_subscriber_id")),
    )
    op.create_index(op.f("ix_welcome_mails_list_id"), "welcome_mails", ["list_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_welcome_mails_list_id"), table_name="welcome_mails")
    op.drop_table("welcome_mails")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("archive")
    with op.batch_alter_table("mailing_lists") as batch:
        batch.drop_column("welcome")
