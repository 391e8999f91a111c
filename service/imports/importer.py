"""The chunked upsert: rows of a file into subscribers, subscriptions and the consent ledger.

A chunk (5,000 rows by default) is one transaction: its suppressions and existing
subscribers are looked up in bulk, new subscribers, subscriptions, consent records and
confirmation mails are written with bulk `INSERT … ON CONFLICT DO NOTHING`, then the chunk
commits. Every step only adds what is missing, so a chunk is idempotent: re-running a file
changes nothing, and after a crash or Ctrl-C (the open chunk rolls back) the same import
simply runs again.

What a row does, per address (case-insensitive, duplicates in the file merged, the first
value of each field winning):

- suppressed or erased address, or already unsubscribed from the list: refused (an
  import never re-adds someone who left or asked to be forgotten);
- new address: a subscriber with a `confirmed` subscription (`confirmed` mode: the
  organisation vouches for prior consent, the ledger records its note) or a `pending`
  one and a confirmation mail (default mode);
- known address: missing details are filled in (never overwritten) and a missing
  subscription is added as above; a pending one is confirmed in `confirmed` mode.

Counts are disjoint: created + updated + skipped + refused + invalid = rows read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, cast

from flask import current_app
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import utcnow
from ..models import (
    ConfirmationMail,
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from ..queue import MAIL_RETRY, enqueue_after_commit
from ..subscribers import Evidence, consent_fields, email_hash, suppressed_hashes
from ..subscriptions.signup import may_send_confirmation
from .csvfile import Problem, Row

CHUNK_SIZE = 5000
# Confirmation mails per job: small enough to finish well inside a job timeout, large
# enough that a million-row import does not put a million jobs into Redis.
MAIL_BATCH = 200

SUBSCRIBERS = cast(Table, Subscriber.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
CONSENT = cast(Table, ConsentRecord.__table__)
MAILS = cast(Table, ConfirmationMail.__table__)

REFUSED = {
    SuppressionReason.erased: "refused: the address was erased at its owner's request "
                              "(only the owner can sign up again)",
    SuppressionReason.bounce: "refused: the address is suppressed (it bounced)",
    SuppressionReason.soft_bounce: "refused: the address is suppressed (repeated soft bounces)",
    SuppressionReason.complaint: "refused: the address is suppressed (spam complaint)",
    SuppressionReason.manual: "refused: the address is on the suppression list",
}
UNSUBSCRIBED = "refused: unsubscribed from this list (only the subscriber can resubscribe)"


@dataclass(frozen=True)
class ImportOptions:
    list_id: int
    confirmed: bool = False
    consent_note: str = ""
    evidence: Evidence = field(default_factory=lambda: Evidence(actor="cli", endpoint="import"))
    chunk_size: int = CHUNK_SIZE

    @property
    def action(self) -> str:
        """The consent-ledger action: the organisation's word, or a pending signup."""
        return "import" if self.confirmed else "import_pending"


@dataclass
class Counts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    refused: int = 0
    invalid: int = 0
    mails_queued: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ChunkResult:
    counts: Counts
    problems: list[Problem]
    last_line: int


# Called inside the chunk's transaction, before it commits.
ChunkHook = Callable[[Session, ChunkResult], None]


def run_import(
    session: Session,
    items: Iterable[Row | Problem],
    options: ImportOptions,
    *,
    on_chunk: ChunkHook | None = None,
    after_line: int = 0,
) -> Counts:
    """Import `items` chunk by chunk, committing each; return the totals.

    `after_line` resumes a job: items on that line or before were done by an earlier
    attempt (their counts are already stored) and are passed over.
    """
    settings: Settings = current_app.extensions["settings"]
    total = Counts()
    chunk: list[Row | Problem] = []
    for item in items:
        if item.line <= after_line:
            continue
        chunk.append(item)
        if len(chunk) >= options.chunk_size:
            total.add(_commit(session, options, settings, chunk, on_chunk))
            chunk = []
    if chunk:
        total.add(_commit(session, options, settings, chunk, on_chunk))
    return total


def _commit(session: Session, options: ImportOptions, settings: Settings,
            chunk: Sequence[Row | Problem], on_chunk: ChunkHook | None) -> Counts:
    try:
        result = import_chunk(session, options, settings, chunk)
        if on_chunk is not None:
            on_chunk(session, result)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result.counts


def insert_for(session: Session, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's dialect (PostgreSQL or SQLite)."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _merge(first: Row, later: Row) -> Row:
    """The same address twice in a file: the first value of each field wins."""
    return Row(
        first.line, first.email, first.key,
        first.first_name or later.first_name,
        first.last_name or later.last_name,
        first.postal_code or later.postal_code,
        first.state or later.state,
        first.locale or later.locale,
        {**later.attributes, **first.attributes},
    )


def import_chunk(session: Session, options: ImportOptions, settings: Settings,
                 chunk: Sequence[Row | Problem]) -> ChunkResult:
    """Write one chunk. The caller commits (and rolls back on error)."""
    counts = Counts(rows=len(chunk))
    problems: list[Problem] = []
    rows: dict[str, Row] = {}
    for item in chunk:
        if isinstance(item, Problem):
            problems.append(item)
            if item.refused:
                counts.refused += 1
            else:
                counts.invalid += 1
        elif (seen := rows.get(item.key)) is None:
            rows[item.key] = item
        else:
            rows[item.key] = _merge(seen, item)
            counts.skipped += 1
    last_line = chunk[-1].line if chunk else 0
    if not rows:
        return ChunkResult(counts, problems, last_line)

    digests = {key: email_hash(row.email, settings) for key, row in rows.items()}
    blocked = suppressed_hashes(session, list(digests.values()))
    if blocked:
        for key in list(rows):
            reason = blocked.get(digests[key])
            if reason is not None:
                row = rows.pop(key)
                problems.append(Problem(row.line, row.email, REFUSED[reason], refused=True))
                counts.refused += 1

    now = utcnow()
    existing = _existing(session, list(rows))
    created = _create_subscribers(session, [r for k, r in rows.items() if k not in existing], now)
    raced = [k for k in rows if k not in existing and k not in created]
    if raced:  # created by a signup between our look-up and our insert
        existing.update(_existing(session, raced))
    filled = _fill_blanks(session, rows, existing, now)

    statuses = _subscription_statuses(
        session, options.list_id, [s["id"] for s in existing.values()]
    )
    wanted = SubscriptionStatus.confirmed if options.confirmed else SubscriptionStatus.pending
    to_add = list(created.values())
    to_confirm: list[int] = []
    unsubscribed: set[int] = set()
    for s in existing.values():
        status = statuses.get(s["id"])
        if status is None:
            to_add.append(s["id"])
        elif status == SubscriptionStatus.unsubscribed:
            unsubscribed.add(s["id"])
        elif status == SubscriptionStatus.pending and options.confirmed:
            to_confirm.append(s["id"])
    added = _add_subscriptions(session, options.list_id, to_add, wanted, now)
    confirmed = _confirm_pending(session, options.list_id, to_confirm, now)
    _record_consent(session, options, added | confirmed, now)
    if not options.confirmed:
        counts.mails_queued = _queue_confirmations(
            session, options.list_id, added, set(created.values()), settings, now
        )

    for key, row in rows.items():
        if key in created:
            counts.created += 1
            continue
        sid = existing[key]["id"]
        if sid in unsubscribed:
            problems.append(Problem(row.line, row.email, UNSUBSCRIBED, refused=True))
            counts.refused += 1
        elif sid in added or sid in confirmed or sid in filled:
            counts.updated += 1
        else:
            counts.skipped += 1
    problems.sort(key=lambda p: p.line)
    return ChunkResult(counts, problems, last_line)


def _existing(session: Session, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    s = SUBSCRIBERS.c
    query = select(s.id, s.email_key, s.first_name, s.last_name, s.postal_code, s.state,
                   s.attributes).where(s.email_key.in_(keys))
    return {row.email_key: row._asdict() for row in session.execute(query)}


def _create_subscribers(session: Session, new: list[Row], now: Any) -> dict[str, int]:
    if not new:
        return {}
    s = SUBSCRIBERS.c
    statement = (
        insert_for(session, SUBSCRIBERS)
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(s.id, s.email_key)
    )
    params = [
        {
            "email": r.email, "email_key": r.key, "first_name": r.first_name,
            "last_name": r.last_name, "postal_code": r.postal_code, "state": r.state,
            "locale": r.locale or "en", "status": SubscriberStatus.active,
            "attributes": r.attributes, "created_at": now, "updated_at": now,
        }
        for r in new
    ]
    return {key: sid for sid, key in session.execute(statement, params)}


def _fill_blanks(session: Session, rows: dict[str, Row], existing: dict[str, dict[str, Any]],
                 now: Any) -> set[int]:
    """Known people: add details the database lacks, never overwrite one it has."""
    changes: list[dict[str, Any]] = []
    for key, db_row in existing.items():
        row = rows[key]
        first = db_row["first_name"] or row.first_name
        last = db_row["last_name"] or row.last_name
        postal, state = db_row["postal_code"], db_row["state"]
        if not postal and row.postal_code:
            postal, state = row.postal_code, row.state or state
        state = state or row.state
        attributes = dict(db_row["attributes"] or {})
        missing = {k: v for k, v in row.attributes.items() if k not in attributes}
        attributes.update(missing)
        if (first, last, postal, state) != (
            db_row["first_name"], db_row["last_name"], db_row["postal_code"], db_row["state"]
        ) or missing:
            changes.append({"b_id": db_row["id"], "b_first": first, "b_last": last,
                            "b_postal": postal, "b_state": state, "b_attributes": attributes})
    if changes:
        s = SUBSCRIBERS.c
        statement = (
            update(SUBSCRIBERS)
            .where(s.id == bindparam("b_id"))
            .values(first_name=bindparam("b_first"), last_name=bindparam("b_last"),
                    postal_code=bindparam("b_postal"), state=bindparam("b_state"),
                    attributes=bindparam("b_attributes", type_=s.attributes.type),
                    updated_at=now)
        )
        session.execute(statement, changes)
    return {c["b_id"] for c in changes}


def _subscription_statuses(session: Session, list_id: int,
                           subscriber_ids: list[int]) -> dict[int, SubscriptionStatus]:
    if not subscriber_ids:
        return {}
    t = SUBSCRIPTIONS.c
    query = select(t.subscriber_id, t.status).where(
        t.list_id == list_id, t.subscriber_id.in_(subscriber_ids)
    )
    return {sid: SubscriptionStatus(status) for sid, status in session.execute(query)}


def _add_subscriptions(session: Session, list_id: int, subscriber_ids: list[int],
                       status: SubscriptionStatus, now: Any) -> set[int]:
    if not subscriber_ids:
        return set()
    t = SUBSCRIPTIONS.c
    statement = (
        insert_for(session, SUBSCRIPTIONS)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
        .returning(t.subscriber_id)
    )
    confirmed_at = now if status == SubscriptionStatus.confirmed else None
    params = [
        {"subscriber_id": sid, "list_id": list_id, "status": status, "created_at": now,
         "updated_at": now, "confirmed_at": confirmed_at, "unsubscribed_at": None}
        for sid in subscriber_ids
    ]
    return set(session.execute(statement, params).scalars())


def _confirm_pending(session: Session, list_id: int, subscriber_ids: list[int],
                     now: Any) -> set[int]:
    if not subscriber_ids:
        return set()
    t = SUBSCRIPTIONS.c
    statement = (
        update(SUBSCRIPTIONS)
        .where(t.list_id == list_id, t.subscriber_id.in_(subscriber_ids),
               t.status == SubscriptionStatus.pending)
        .values(status=SubscriptionStatus.confirmed, confirmed_at=now, updated_at=now)
        .returning(t.subscriber_id)
    )
    return set(session.execute(statement).scalars())


def _record_consent(session: Session, options: ImportOptions, subscriber_ids: set[int],
                    now: Any) -> None:
    if not subscriber_ids:
        return
    base = consent_fields(options.action, options.evidence, options.list_id,
                          options.consent_note)
    session.execute(
        insert_for(session, CONSENT),
        [{**base, "subscriber_id": sid, "at": now} for sid in sorted(subscriber_ids)],
    )


def _queue_confirmations(session: Session, list_id: int, pending: set[int], new: set[int],
                         settings: Settings, now: Any) -> int:
    """One ConfirmationMail row per newly pending subscription, sent by batch jobs.

    The per-address throttle of signups applies: a brand-new subscriber has had no mail,
    a known one is asked `may_send_confirmation`. The jobs go to the `default` queue, so
    a big import never delays the confirmation a person signing up is waiting for.
    """
    if settings.confirm_mail_max_per_day <= 0:
        return 0
    allowed = sorted(
        sid for sid in pending
        if sid in new or may_send_confirmation(session, sid, [list_id], settings)
    )
    if not allowed:
        return 0
    m = MAILS.c
    mail_ids = list(
        session.execute(
            insert_for(session, MAILS).returning(m.id),
            [{"subscriber_id": sid, "at": now, "list_ids": str(list_id), "result": "queued"}
             for sid in allowed],
        ).scalars()
    )
    from .jobs import send_import_confirmations

    for start in range(0, len(mail_ids), MAIL_BATCH):
        enqueue_after_commit(
            session, send_import_confirmations, sorted(mail_ids[start:start + MAIL_BATCH]),
            queue="default", retry_intervals=MAIL_RETRY,
        )
    return len(mail_ids)
