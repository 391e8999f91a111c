"""Event Webhook requests are stored whole (`webhook_batches`) and applied by a job;
`webhook_event_keys` keeps only the two deduplication keys of each event applied and
replaces `webhook_events`.

Events still waiting in `webhook_events` move into batches (in their order) so the job
applies them; the keys of applied events move over; their payloads (which held
addresses) are dropped.

Revision ID: 1900
Revises: 1200
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "1900"
down_revision: str | None = "1200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CHUNK = 5000


def _at(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, service.db.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    batches = op.create_table(
        "webhook_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        _at("received_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_batches")),
        sa.UniqueConstraint("body_hash", name=op.f("uq_webhook_batches_body_hash")),
    )
    _compress_quickly("webhook_batches", "body")
    keys = op.create_table(
        "webhook_event_keys",
        sa.Column("dedup_key", sa.String(100), nullable=False),
        sa.Column("content_key", sa.String(80), nullable=False),
        _at("received_at"),
        sa.PrimaryKeyConstraint("dedup_key", name=op.f("pk_webhook_event_keys")),
        sa.UniqueConstraint("content_key", name=op.f("uq_webhook_event_keys_content_key")),
    )
    _move_pending_events(batches)
    _move_applied_keys(keys)
    op.drop_table("webhook_events")


def _compress_quickly(table: str, column: str) -> None:
    """PostgreSQL: compress the column with lz4 where the server has it. A batch body
    (~1.6 MB for 5,000 events) lives seconds: the default pglz took 13 ms to store one,
    lz4 6 ms (and both ~1/16 of the size)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    has_lz4 = bind.execute(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar()
    if has_lz4:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def _move_applied_keys(keys: sa.Table) -> None:
    """The keys of applied events, their content keys prefixed with the event's timestamp
    in hex as `ingest.content_key` then made them (and revision 2200 reads them)."""
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, dedup_key, content_key, CAST(payload AS TEXT), received_at "
            "FROM webhook_events WHERE id > :last ORDER BY id LIMIT :n")
            .columns(received_at=service.db.UTCDateTime(timezone=True)),
            {"last": last, "n": CHUNK}).all()
        if not rows:
            return
        bind.execute(keys.insert(), [
            {"dedup_key": dedup, "content_key": _prefixed(content, payload),
             "received_at": received_at}
            for _id, dedup, content, payload, received_at in rows])
        last = rows[-1][0]


def _prefixed(content_key: str, payload: str) -> str:
    if ":" in content_key:
        return content_key
    try:
        timestamp = json.loads(payload).get("timestamp")
    except (ValueError, AttributeError):
        return content_key
    if type(timestamp) is int and 0 <= timestamp < 1 << 40:
        return f"{timestamp:x}:{content_key}"
    return content_key


def _move_pending_events(batches: sa.Table) -> None:
    """Unapplied events become batches of up to CHUNK, oldest first; their rows go, so
    their keys are new to the job."""
    bind = op.get_bind()
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, CAST(payload AS TEXT) FROM webhook_events "
            "WHERE processed_at IS NULL ORDER BY id LIMIT :n"), {"n": CHUNK}).all()
        if not rows:
            return
        body = "[" + ",".join(payload for _id, payload in rows) + "]"
        bind.execute(batches.insert().values(
            body_hash=hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest(),
            body=body, events=len(rows), received_at=datetime.now(UTC)))
        bind.execute(sa.text("DELETE FROM webhook_events WHERE id IN :ids")
                     .bindparams(sa.bindparam("ids", expanding=True)),
                     {"ids": [row[0] for row in rows]})


def downgrade() -> None:
    waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar()
    if waiting:
        raise RuntimeError(
            f"{waiting} Event Webhook batches are not applied yet: run a worker until "
            "webhook_batches is empty, then downgrade")
    op.create_table(
        "webhook_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("dedup_key", sa.String(100), nullable=False),
        sa.Column("content_key", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        _at("received_at"),
        sa.Column("processed_at", service.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("content_key", name=op.f("uq_webhook_events_content_key")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_webhook_events_dedup_key")),
    )
    op.create_index("ix_webhook_events_processed_at", "webhook_events", ["processed_at", "id"])
    # Content keys as that revision made them: the bare digest, its last 64 characters.
    op.execute("INSERT INTO webhook_events (dedup_key, content_key, event, payload, "
               "received_at, processed_at) SELECT dedup_key, "
               "SUBSTR(content_key, LENGTH(content_key) - 63), '', '{}', "
               "received_at, received_at FROM webhook_event_keys")
    op.drop_table("webhook_event_keys")
    op.drop_table("webhook_batches")
