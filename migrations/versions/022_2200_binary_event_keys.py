"""The Event Webhook's deduplication keys become 16 bytes each (the event's timestamp, then
12 bytes of a SHA-256) instead of text of up to 100 characters: smaller indexes that a
storm of events fills in time order.

The keys already stored are converted, so a re-delivery of an event applied before the
upgrade is still a duplicate: a content key keeps its timestamp and the first 12 bytes of
its hash; an `id:` key becomes the hash of the `sg_event_id` behind its row's timestamp
(`service.webhooks.ingest` computes the same); an event without a timestamp gets zeros
in its place, as the code does.

The downgrade cannot turn hashes back into ids: it keeps no keys, and says how many it
dropped (re-deliveries within SendGrid's 24 hours of retries would be counted again).

Revision ID: 2200
Revises: 2100
"""

import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "2200"
down_revision: str | None = "2100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 10_000
log = logging.getLogger("alembic.runtime.migration")


def _keys_table(name: str, dedup_type: Any, content_type: Any) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("dedup_key", dedup_type, nullable=False),
        sa.Column("content_key", content_type, nullable=False),
        sa.Column("received_at", service.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dedup_key", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint("content_key", name=op.f(f"uq_{name}_content_key")),
    )


def _binary(dedup: str, content: str) -> tuple[bytes, bytes]:
    """The new (dedup, content) keys of one old pair."""
    stamp, _, digest = content.rpartition(":")
    moment = int(stamp, 16) if stamp else -1
    prefix = moment.to_bytes(4, "big") if 0 <= moment < 1 << 32 else bytes(4)
    new_content = prefix + bytes.fromhex(digest[:24])
    if not dedup.startswith("id:"):
        return new_content, new_content
    id_hash = hashlib.sha256(dedup[3:].encode("utf-8", "surrogatepass")).digest()
    return prefix + id_hash[:12], new_content


def _old_rows(bind: sa.Connection) -> Iterator[list[sa.Row[Any]]]:
    last = ""
    while True:
        rows = bind.execute(sa.text(
            "SELECT dedup_key, content_key, received_at FROM webhook_event_keys_text "
            "WHERE dedup_key > :last ORDER BY dedup_key LIMIT :n")
            .columns(received_at=service.db.UTCDateTime(timezone=True)),
            {"last": last, "n": CHUNK}).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def upgrade() -> None:
    bind = op.get_bind()
    op.drop_index("ix_webhook_event_keys_received_at", table_name="webhook_event_keys")
    op.rename_table("webhook_event_keys", "webhook_event_keys_text")
    if bind.dialect.name == "postgresql":  # index names are per schema there
        op.execute("ALTER INDEX pk_webhook_event_keys RENAME TO pk_webhook_event_keys_text")
        op.execute("ALTER INDEX uq_webhook_event_keys_content_key "
                   "RENAME TO uq_webhook_event_keys_text_content_key")
    keys = _keys_table("webhook_event_keys", sa.LargeBinary(16), sa.LargeBinary(16))
    for rows in _old_rows(bind):
        converted = []
        for dedup, content, received_at in rows:
            new_dedup, new_content = _binary(dedup, content)
            converted.append({"dedup_key": new_dedup, "content_key": new_content,
                              "received_at": received_at})
        bind.execute(keys.insert(), converted)
    op.drop_table("webhook_event_keys_text")
    op.create_index("ix_webhook_event_keys_received_at", "webhook_event_keys", ["received_at"],
                    postgresql_using="brin")


def downgrade() -> None:
    bind = op.get_bind()
    dropped = bind.execute(sa.text("SELECT count(*) FROM webhook_event_keys")).scalar()
    if dropped:
        log.warning("dropping %s Event Webhook keys (they cannot be turned back into text); "
                    "re-deliveries of those events would be applied again", dropped)
    op.drop_index("ix_webhook_event_keys_received_at", table_name="webhook_event_keys")
    op.drop_table("webhook_event_keys")
    _keys_table("webhook_event_keys", sa.String(100), sa.String(80))
    op.create_index("ix_webhook_event_keys_received_at", "webhook_event_keys", ["received_at"],
                    postgresql_using="brin")
