"""Outgoing webhooks: endpoints, the events (written with the change that caused them),
the outbox of deliveries per endpoint, and the log of attempts.

Revision ID: 1200
Revises: 1800
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "1200"
down_revision: str | None = "1800"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, service.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outgoing_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(300), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _at("failing_since", True),
        _at("disabled_at", True),
        sa.Column("disabled_reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_endpoints")),
    )
    op.create_table(
        "outgoing_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        _at("created_at"),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_events")),
        sa.UniqueConstraint("public_id", name=op.f("uq_outgoing_events_public_id")),
    )
    op.create_table(
        "outgoing_deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("event_id", BIG_ID, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_attempt_at"),
        _at("claimed_until", True),
        _at("delivered_at", True),
        _at("created_at"),
        sa.ForeignKeyConstraint(["event_id"], ["outgoing_events.id"], ondelete="CASCADE",
                                name=op.f("fk_outgoing_deliveries_event_id_outgoing_events")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["outgoing_endpoints.id"], ondelete="CASCADE",
            name=op.f("fk_outgoing_deliveries_endpoint_id_outgoing_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_deliveries")),
        sa.UniqueConstraint("event_id", "endpoint_id",
                            name=op.f("uq_outgoing_deliveries_event_id")),
    )
    op.create_index("ix_outgoing_deliveries_status_next", "outgoing_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index("ix_outgoing_deliveries_endpoint", "outgoing_deliveries",
                    ["endpoint_id", "id"])
    op.create_table(
        "outgoing_attempts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("delivery_id", BIG_ID, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        _at("at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["outgoing_deliveries.id"], ondelete="CASCADE",
            name=op.f("fk_outgoing_attempts_delivery_id_outgoing_deliveries")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["outgoing_endpoints.id"], ondelete="CASCADE",
            name=op.f("fk_outgoing_attempts_endpoint_id_outgoing_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_attempts")),
    )
    op.create_index(op.f("ix_outgoing_attempts_delivery_id"), "outgoing_attempts",
                    ["delivery_id"])
    op.create_index("ix_outgoing_attempts_endpoint", "outgoing_attempts",
                    ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_outgoing_attempts_endpoint", table_name="outgoing_attempts")
    op.drop_index(op.f("ix_outgoing_attempts_delivery_id"), table_name="outgoing_attempts")
    op.drop_table("outgoing_attempts")
    op.drop_index("ix_outgoing_deliveries_endpoint", table_name="outgoing_deliveries")
    op.drop_index("ix_outgoing_deliveries_status_next", table_name="outgoing_deliveries")
    op.drop_table("outgoing_deliveries")
    op.drop_table("outgoing_events")
    op.drop_table("outgoing_endpoints")
