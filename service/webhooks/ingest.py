"""Storing raw Event Webhook events first, deduplicated, in one bulk statement.

A batch is parsed with orjson and, on PostgreSQL, written with one `COPY` after one
indexed look-up of the keys already stored: the per-row work of an `INSERT … ON CONFLICT`
(and re-serialising through SQLAlchemy's JSON type) was most of the request's time. Two
requests racing with the same events make the `COPY` hit a unique index; that batch is
then stored again the portable way (`INSERT … ON CONFLICT DO NOTHING`), which SQLite always
uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from psycopg.errors import UniqueViolation
from sqlalchemy import Insert, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import jsonbody
from ..bulk import one_of
from ..db import is_pg, utcnow
from ..jsonbody import MAX_DEPTH, TooDeep
from ..models import WebhookEvent

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 100
EVENTS_TABLE = cast(Table, WebhookEvent.__table__)
COPY_EVENTS = ("COPY webhook_events (dedup_key, content_key, event, payload, received_at) "
               "FROM STDIN")


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
    """The batch's events. orjson first (several times faster); what it refuses (a lone
    surrogate escape, say) gets the standard parser's verdict, so both accept the same."""
    try:
        events = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        events = _parse_slowly(raw_body)
    else:
        if jsonbody.nests_deeper_than(events, MAX_DEPTH):
            raise MalformedBatch(TooDeep(raw_body).message)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MalformedBatch("body must be a JSON array of objects")
    return events


def _parse_slowly(raw_body: bytes) -> Any:
    try:
        return jsonbody.loads(raw_body)
    except TooDeep as exc:
        raise MalformedBatch(exc.message) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBatch("body is not JSON") from exc


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


def _payload_text(event: dict[str, Any]) -> str:
    try:
        return orjson.dumps(event).decode()
    except TypeError:  # a lone surrogate (accepted by the standard parser): keep it escaped
        return json.dumps(event)


def store_events(session: Session, events: list[dict[str, Any]]) -> IngestResult:
    """Insert the events not seen before; the caller commits.

    Duplicates inside the batch are dropped here, duplicates of earlier batches by the
    unique indexes, so concurrent deliveries of the same batch store each event once.
    """
    result = IngestResult(received=len(events))
    now = utcnow()
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for event in events:
        name = str(event.get("event", ""))[:32]
        content = content_key(event)
        key = dedup_key(event, content)
        if key in seen or content in seen:
            result.by_event[(name, "duplicate")] += 1
            continue
        seen.update((key, content))
        rows.append((key, content, name, event))
    if not rows:
        return result
    stored = _copy_new(session, rows, now) if is_pg(session) else None
    if stored is None:
        stored = _insert_new(session, rows, now)
    result.stored = len(stored)
    for key, _content, name, _event in rows:
        result.by_event[(name, "stored" if key in stored else "duplicate")] += 1
    return result


def _insert_new(session: Session, rows: list[tuple[str, str, str, dict[str, Any]]],
                now: Any) -> set[str]:
    statement = _insert_ignoring_duplicates(session).returning(EVENTS_TABLE.c.dedup_key)
    return set(session.execute(statement, [
        {"dedup_key": key, "content_key": content, "event": name, "payload": event,
         "received_at": now, "processed_at": None}
        for key, content, name, event in rows
    ]).scalars())


def _copy_new(session: Session, rows: list[tuple[str, str, str, dict[str, Any]]],
              now: Any) -> set[str] | None:
    """PostgreSQL: look the keys up once, `COPY` the new rows; their dedup keys. None when
    a concurrent request stored some of them first (nothing written here then)."""
    table = EVENTS_TABLE
    try:
        known = set(session.scalars(select(table.c.dedup_key).where(
            one_of(session, table.c.dedup_key, [r[0] for r in rows]))))
        known_contents = set(session.scalars(select(table.c.content_key).where(
            one_of(session, table.c.content_key, [r[1] for r in rows]))))
    except ValueError:  # an sg_event_id holding the list separator: the portable way
        return None
    fresh = [r for r in rows if r[0] not in known and r[1] not in known_contents]
    if not fresh:
        return set()
    savepoint = session.begin_nested()
    try:
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(COPY_EVENTS) as copy:
            for key, content, name, event in fresh:
                copy.write_row((key, content, name, _payload_text(event), now))
    except UniqueViolation:
        savepoint.rollback()
        log.info("webhook batch raced another request; storing it with ON CONFLICT")
        return None
    except IntegrityError:  # pragma: no cover - the same, if wrapped by SQLAlchemy
        savepoint.rollback()
        return None
    savepoint.commit()
    return {r[0] for r in fresh}
