"""Taking an Event Webhook request: store the body once; later, split it into new events.

The request verifies the signature, parses the body (a malformed one gets 400 and is not
stored) and writes it as one `webhook_batches` row: SendGrid waits for one insert per
batch, not one per event. The job then calls `fresh_events`, which inserts the two
deduplication keys of every event in one statement (`ON CONFLICT DO NOTHING`, so events
seen before, and events two workers race for, are dropped by the unique indexes) and
returns only the events not seen before.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, text
from sqlalchemy.orm import Session

from .. import jsonbody
from ..bulk import SEP
from ..db import delete_in_chunks, insert_for, is_pg, utcnow
from ..jsonbody import MAX_DEPTH, TooDeep
from ..models import WebhookBatch, WebhookEventKey

KEYS_TABLE = cast(Table, WebhookEventKey.__table__)
BATCHES_TABLE = cast(Table, WebhookBatch.__table__)
# PostgreSQL: the batch's keys as two strings of hex joined by SEP, one statement; the rows
# that conflict are the duplicates. `n <= :count` drops an empty element. The new keys
# come back as one joined string (thousands of rows cost more to fetch).
INSERT_KEYS_PG = text(
    "WITH new AS (INSERT INTO webhook_event_keys (dedup_key, content_key, received_at) "
    "SELECT decode(k, 'hex'), decode(c, 'hex'), :now FROM unnest("
    "string_to_array(:keys, :sep), string_to_array(:contents, :sep)) "
    "WITH ORDINALITY AS t(k, c, n) WHERE n <= :count "
    "ON CONFLICT DO NOTHING RETURNING dedup_key) "
    "SELECT count(*), string_agg(encode(dedup_key, 'hex'), :sep) FROM new")


# How long the keys of applied events are kept: SendGrid retries a post for 24 hours, so a
# re-delivery older than three days cannot come; older keys only make the index bigger.
KEEP_KEYS = timedelta(hours=72)
PRUNE_CHUNK = 10_000


class MalformedBatch(ValueError):
    """The body is not a JSON array of event objects."""


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


def store_batch(session: Session, raw_body: bytes, events: list[dict[str, Any]]) -> bool:
    """Store a parsed batch for the job; the caller commits. False when the very same
    body is already waiting (SendGrid posted it again before it was applied)."""
    body = raw_body.decode("utf-8")  # parse_events accepted it: it is UTF-8
    values = {"body_hash": hashlib.sha256(raw_body).hexdigest(), "body": body,
              "events": len(events), "received_at": utcnow()}
    statement = insert_for(session, BATCHES_TABLE).on_conflict_do_nothing()
    stored = session.execute(statement.values(**values).returning(BATCHES_TABLE.c.id))
    return stored.first() is not None


def load_batch(body: str) -> list[dict[str, Any]]:
    """A stored batch's events (it was parsed once already, at the request)."""
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:  # what only the standard parser accepts
        events = json.loads(body)
    return [e for e in events if isinstance(e, dict)]


# A key is 16 bytes: the event's timestamp (4 bytes, big-endian; zeros when it has no sane
# one), then the first 12 bytes of a SHA-256. The timestamp first puts a send's keys into
# the unique indexes in time order (events arrive roughly so), on a few hot pages instead
# of one random page each; 16 bytes instead of ~100 characters of text keep the indexes in
# memory longer (at 2.4 million events: 149,000 key rows/s instead of 100,000, and 176
# bytes per event on disk instead of 450). 96 bits of hash among the events of one second
# cannot collide in practice.
NO_TIME = bytes(4)


def _time_prefix(timestamp: Any) -> bytes:
    if type(timestamp) is int and 0 <= timestamp < 1 << 32:
        return timestamp.to_bytes(4, "big")
    return NO_TIME


def content_key(event: dict[str, Any]) -> bytes:
    """Identity of an event independent of `sg_event_id` (SendGrid re-sends with new ids):
    the hash of message id, event, timestamp, address and url (two clicks on different
    links are two events), joined by NUL; of the whole event when it has neither message
    id nor timestamp."""
    get = event.get
    timestamp = get("timestamp")
    if get("sg_message_id") or timestamp is not None:
        material = (f"{get('sg_message_id', '')}\x00{get('event', '')}\x00"
                    f"{timestamp if timestamp is not None else ''}\x00"
                    f"{str(get('email', '')).lower()}\x00{get('url', '')}")
    else:
        material = json.dumps(event, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest()
    return _time_prefix(timestamp) + digest[:12]


def dedup_key(event: dict[str, Any], content: bytes) -> bytes:
    """The hash of the event's `sg_event_id` behind the same time prefix as its content
    key; the content key itself when the event has no id."""
    sg_event_id = event.get("sg_event_id")
    if isinstance(sg_event_id, str) and sg_event_id:
        digest = hashlib.sha256(sg_event_id.encode("utf-8", "surrogatepass")).digest()
        return content[:4] + digest[:12]
    return content


def fresh_events(session: Session, events: list[dict[str, Any]],
                 now: datetime | None = None) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The events not seen before (in their order), their keys now stored; and how many
    of each kind were duplicates. The caller's transaction holds the keys: a rollback
    forgets them with the effects."""
    duplicates: Counter[str] = Counter()
    keyed: list[tuple[bytes, bytes, dict[str, Any]]] = []
    seen: set[bytes] = set()
    for event in events:
        content = content_key(event)
        key = dedup_key(event, content)
        if key in seen or content in seen:
            duplicates[str(event.get("event", ""))[:32]] += 1
            continue
        seen.update((key, content))
        keyed.append((key, content, event))
    if not keyed:
        return [], duplicates
    stored = _insert_keys(session, [(k, c) for k, c, _e in keyed], now or utcnow())
    fresh = []
    for key, _content, event in keyed:
        if key in stored:
            fresh.append(event)
        else:
            duplicates[str(event.get("event", ""))[:32]] += 1
    return fresh, duplicates


def _insert_keys(session: Session, keys: list[tuple[bytes, bytes]],
                 now: datetime) -> set[bytes]:
    """Insert the (dedup key, content key) pairs; the dedup keys that were new."""
    if is_pg(session):
        count, joined = session.execute(INSERT_KEYS_PG, {
            "keys": SEP.join([k.hex() for k, _c in keys]),
            "contents": SEP.join([c.hex() for _k, c in keys]),
            "sep": SEP, "count": len(keys), "now": now}).one()
        return {bytes.fromhex(key) for key in joined.split(SEP)} if count else set()
    statement = insert_for(session, KEYS_TABLE).on_conflict_do_nothing().returning(
        KEYS_TABLE.c.dedup_key)
    return set(session.scalars(statement, [
        {"dedup_key": k, "content_key": c, "received_at": now} for k, c in keys]))


def prune_keys(session: Session, now: datetime | None = None) -> int:
    """Delete the keys of events applied more than KEEP_KEYS ago, PRUNE_CHUNK per commit
    (a worker's recovery pass calls it); how many went."""
    cutoff = (now or utcnow()) - KEEP_KEYS
    return delete_in_chunks(session, KEYS_TABLE.c.dedup_key,
                            KEYS_TABLE.c.received_at < cutoff, chunk=PRUNE_CHUNK)
