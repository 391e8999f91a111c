"""Storing raw Event Webhook events first, deduplicated, in one bulk statement."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Insert, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import jsonbody
from ..db import is_pg, utcnow
from ..jsonbody import TooDeep
from ..models import WebhookEvent

MAX_KEY_LENGTH = 100
EVENTS_TABLE = cast(Table, WebhookEvent.__table__)


class MalformedBatch(ValueError):
    """The body is not a JSON array of event objects."""


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    by_event: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def parse_events(raw_body: bytes) -> list[dict[str, Any]]:
    try:
        events = jsonbody.loads(raw_body)
    except TooDeep as exc:
        raise MalformedBatch(exc.message) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBatch("body is not JSON") from exc
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MalformedBatch("body must be a JSON array of objects")
    return events


def content_key(event: dict[str, Any]) -> str:
    """Identity of an event independent of `sg_event_id` (SendGrid re-sends with new ids)."""
    if event.get("sg_message_id") or event.get("timestamp") is not None:
        parts = [
            str(event.get("sg_message_id", "")),
            str(event.get("event", "")),
            str(event.get("timestamp", "")),
            str(event.get("email", "")).lower(),
            str(event.get("url", "")),  # two clicks on different links are two events
        ]
        material = "\x00".join(parts)
    else:
        material = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def dedup_key(event: dict[str, Any], content: str) -> str:
    sg_event_id = event.get("sg_event_id")
    if isinstance(sg_event_id, str) and sg_event_id and len(sg_event_id) <= MAX_KEY_LENGTH - 3:
        return f"id:{sg_event_id}"
    return f"h:{content}"


def _insert_ignoring_duplicates(session: Session) -> Insert:
    table = EVENTS_TABLE
    if is_pg(session):
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).prefix_with("OR IGNORE")


def store_events(session: Session, events: list[dict[str, Any]]) -> IngestResult:
    """Insert the events not seen before; the caller commits.

    Duplicates inside the batch are dropped here, duplicates of earlier batches by the
    unique indexes (`ON CONFLICT DO NOTHING` / `INSERT OR IGNORE`), so concurrent
    deliveries of the same batch store each event once.
    """
    result = IngestResult(received=len(events))
    now = utcnow()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in events:
        name = str(event.get("event", ""))[:32]
        content = content_key(event)
        key = dedup_key(event, content)
        if key in seen or content in seen:
            result.by_event[(name, "duplicate")] += 1
            continue
        seen.update((key, content))
        rows.append({"dedup_key": key, "content_key": content, "event": name,
                     "payload": event, "received_at": now, "processed_at": None})
    if not rows:
        return result
    statement = _insert_ignoring_duplicates(session).returning(EVENTS_TABLE.c.dedup_key)
    stored = set(session.execute(statement, rows).scalars())
    result.stored = len(stored)
    for row in rows:
        outcome = "stored" if row["dedup_key"] in stored else "duplicate"
        result.by_event[(row["event"], outcome)] += 1
    return result
