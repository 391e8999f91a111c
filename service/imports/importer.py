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

import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Table,
    Text,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .. import config
from ..bulk import SEP, one_of, pg_column, pg_ids
from ..config import Settings
from ..db import commit_quickly, insert_for, is_pg, utcnow
from ..fields import TAGS_MAX
from ..models import (
    ConfirmationMail,
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from ..queue import MAIL_RETRY, enqueue_after_commit
from ..subscribers import (
    Details,
    Evidence,
    consent_fields,
    email_hasher,
    merge_attributes,
    merge_details,
    suppressed_hashes,
)
from ..subscriptions.signup import may_send_confirmation
from .csvfile import Problem, Row

# The job that mails an import batch's confirmations (enqueued by name).
SEND_CONFIRMATIONS = "service.jobs.imports.send_import_confirmations"

CHUNK_SIZE = 5000
# Confirmation mails per job: small enough to finish well inside a job timeout, large
# enough that a million-row import does not put a million jobs into Redis.
MAIL_BATCH = 200

SUBSCRIBERS = cast(Table, Subscriber.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
CONSENT = cast(Table, ConsentRecord.__table__)
MAILS = cast(Table, ConfirmationMail.__table__)
TAGS = cast(Table, SubscriberTag.__table__)

REFUSED = {
    SuppressionReason.erased: "refused: the address was erased at its owner's request "
                              "(only the owner can sign up again)",
    SuppressionReason.bounce: "refused: the address is suppressed (it bounced)",
    SuppressionReason.soft_bounce: "refused: the address is suppressed (repeated soft bounces)",
    SuppressionReason.complaint: "refused: the address is suppressed (spam complaint)",
    SuppressionReason.manual: "refused: the address is on the suppression list",
}
UNSUBSCRIBED = "refused: unsubscribed from this list (only the subscriber can resubscribe)"


# PostgreSQL: one statement per chunk and table, each column passed as ONE text parameter
# split by the server (see `service.bulk`).
# New subscribers with their subscription and consent record, in one statement.
_PG_NEW_SUBSCRIBERS = text("""
WITH new AS (
    INSERT INTO subscribers (email, email_key, first_name, last_name, postal_code, state,
                             county, timezone, locale, status, attributes, created_at,
                             updated_at)
    SELECT u.email, u.email_key, u.first_name, u.last_name, u.postal_code, u.state,
           u.county, u.timezone, u.locale, 'active', CAST(u.attributes AS json), :now, :now
    FROM unnest(string_to_array(:email, :sep), string_to_array(:email_key, :sep),
                string_to_array(:first_name, :sep), string_to_array(:last_name, :sep),
                string_to_array(:postal_code, :sep), string_to_array(:state, :sep),
                string_to_array(:county, :sep), string_to_array(:timezone, :sep),
                string_to_array(:locale, :sep), string_to_array(:attributes, :sep))
         WITH ORDINALITY
         AS u(email, email_key, first_name, last_name, postal_code, state, county, timezone,
              locale, attributes, n)
    WHERE u.n <= :count
    ON CONFLICT (email_key) DO NOTHING
    RETURNING id, email_key
), subscribed AS (
    -- rows created by this very statement: no conflict is possible, no RETURNING needed
    INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at,
                               confirmed_at)
    SELECT id, :list_id, :status, :now, :now, CAST(:confirmed_at AS timestamptz) FROM new
), recorded AS (
    INSERT INTO consent_records (subscriber_id, list_id, action, at, ip, user_agent, source,
                                 endpoint, actor, consent_text_version, note)
    SELECT id, :list_id, :action, :now, :ip, :user_agent, :source, :endpoint, :actor,
           :consent_text_version, :note
    FROM new
)
SELECT id, email_key FROM new""")
_PG_SUBSCRIPTIONS = text("""
    INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at,
                               confirmed_at)
    SELECT u.sid, :list_id, :status, :now, :now, CAST(:confirmed_at AS timestamptz)
    FROM unnest(CAST(string_to_array(:ids, ',') AS bigint[])) AS u(sid)
    ON CONFLICT (subscriber_id, list_id) DO NOTHING
    RETURNING subscriber_id""")
_PG_CONSENT = text("""
    INSERT INTO consent_records (subscriber_id, list_id, action, at, ip, user_agent, source,
                                 endpoint, actor, consent_text_version, note)
    SELECT u.sid, :list_id, :action, :now, :ip, :user_agent, :source, :endpoint, :actor,
           :consent_text_version, :note
    FROM unnest(CAST(string_to_array(:ids, ',') AS bigint[])) AS u(sid)""")
_PG_MAILS = text("""
    INSERT INTO confirmation_mails (subscriber_id, at, list_ids, result)
    SELECT u.sid, :now, :list_ids, 'queued'
    FROM unnest(CAST(string_to_array(:ids, ',') AS bigint[])) AS u(sid)
    RETURNING id""")


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
    after_chunk: Callable[[ChunkResult], None] | None = None,
    after_line: int = 0,
    writers: int = 1,
) -> Counts:
    """Import `items` chunk by chunk, committing each; return the totals.

    `on_chunk` runs inside each chunk's transaction, `after_chunk` once it committed.
    `after_line` resumes a job: items on that line or before were done by an earlier
    attempt (their counts are already stored) and are passed over. The file is read and
    parsed on a second thread, a chunk ahead, while the database writes the current one.

    `writers` > 1 (PostgreSQL only) writes that many chunks at once, each on its own
    connection: the server's work per row (indexes, foreign-key checks) is most of the
    time, and one connection uses one core. Chunks then commit out of order, so this is
    for callers that do not resume from a line (the CLI: a re-run is idempotent), and the
    same address in two chunks written at once merges in either order.
    """
    settings = config.settings()
    chunks = prefetch(_chunks(items, options.chunk_size, after_line))
    try:
        if writers <= 1 or not is_pg(session):
            total = Counts()
            for chunk in chunks:
                result = _commit(session, options, settings, chunk, on_chunk)
                total.add(result.counts)
                if after_chunk is not None:
                    after_chunk(result)
            return total
        from .. import db

        return _parallel(db.database().factory, chunks, options, settings, on_chunk,
                         after_chunk, writers)
    finally:
        chunks.close()


def _parallel(factory: Callable[[], Session], chunks: Iterator[list[Row | Problem]],
              options: ImportOptions, settings: Settings, on_chunk: ChunkHook | None,
              after_chunk: Callable[[ChunkResult], None] | None, writers: int) -> Counts:
    total = Counts()
    lock = threading.Lock()
    failures: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        with factory() as own:
            while not stop.is_set():
                try:
                    with lock:
                        chunk = next(chunks, None)
                    if chunk is None:
                        return
                    result = _commit(own, options, settings, chunk, on_chunk)
                    with lock:
                        total.add(result.counts)
                        if after_chunk is not None:
                            after_chunk(result)
                except BaseException as exc:  # re-raised by the caller's thread
                    with lock:
                        failures.append(exc)
                    stop.set()
                    return

    threads = [threading.Thread(target=work, name=f"import-writer-{i}", daemon=True)
               for i in range(writers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        stop.set()  # Ctrl-C: let the chunks being written commit or roll back, then stop
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise failures[0]
    return total


def _chunks(items: Iterable[Row | Problem], size: int,
            after_line: int) -> Iterator[list[Row | Problem]]:
    chunk: list[Row | Problem] = []
    for item in items:
        if item.line <= after_line:
            continue
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def prefetch(chunks: Iterator[list[Row | Problem]], depth: int = 2
             ) -> Generator[list[Row | Problem], None, None]:
    """Produce `chunks` on a thread, at most `depth` ahead (memory stays flat).

    Parsing is Python, writing is mostly waiting for PostgreSQL (the GIL is released),
    so on two cores the two overlap. An exception of the source is raised here, after
    the chunks before it; when the consumer stops, the thread stops and is joined
    before this generator returns, so the caller may close the file.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put("chunk", chunk):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _commit(session: Session, options: ImportOptions, settings: Settings,
            chunk: Sequence[Row | Problem], on_chunk: ChunkHook | None,
            attempts: int = 3) -> ChunkResult:
    for attempt in range(attempts):
        try:
            result = import_chunk(session, options, settings, chunk)
            if on_chunk is not None:
                on_chunk(session, result)
            # A crash of the server may lose the last chunks; the database stays
            # consistent and the import runs again idempotently.
            commit_quickly(session)
            return result
        except DBAPIError as exc:
            session.rollback()
            # Two chunks of one import (or an import and a signup) may deadlock on the
            # same addresses; the chunk is idempotent, so it simply runs again.
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == attempts - 1:
                raise
        except BaseException:
            session.rollback()
            raise
    raise AssertionError("unreachable")


def _merge(first: Row, later: Row) -> Row:
    """The same address twice in a file: the first value of each field wins."""
    postal = first if first.postal_code or not later.postal_code else later
    return Row(
        first.line, first.email, first.key,
        first.first_name or later.first_name,
        first.last_name or later.last_name,
        postal.postal_code,
        first.state or later.state,
        first.locale or later.locale,
        {**later.attributes, **first.attributes},
        postal.county, postal.timezone,
        sorted(set(first.tags) | set(later.tags)) if later.tags else first.tags,
    )


def dedupe_chunk(chunk: Sequence[Row | Problem]) -> tuple[dict[str, Row], list[Problem], Counts]:
    """One row per address key (later duplicates merged into the first and counted as
    skipped), the file's problems apart (counted as refused or invalid)."""
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
    return rows, problems, counts


def subscription_step(status: SubscriptionStatus | None, confirmed: bool) -> str:
    """What an import does to a known person's subscription to its list, given its status:
    "add" it (none yet), "refuse" the row (they left the list: only they may come back),
    "confirm" a pending one (in `confirmed` mode), or "keep" it as it is."""
    if status is None:
        return "add"
    if status == SubscriptionStatus.unsubscribed:
        return "refuse"
    if status == SubscriptionStatus.pending and confirmed:
        return "confirm"
    return "keep"


def import_chunk(session: Session, options: ImportOptions, settings: Settings,
                 chunk: Sequence[Row | Problem]) -> ChunkResult:
    """Write one chunk. The caller commits (and rolls back on error)."""
    rows, problems, counts = dedupe_chunk(chunk)
    last_line = chunk[-1].line if chunk else 0
    if not rows:
        return ChunkResult(counts, problems, last_line)

    hash_of = email_hasher(settings)
    digests = {key: hash_of(row.email) for key, row in rows.items()}
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
    # In key order: two chunks inserting the same addresses lock them in the same order.
    created, complete = _create_subscribers(
        session, options, sorted((r for k, r in rows.items() if k not in existing),
                                 key=lambda r: r.key), now
    )
    raced = [k for k in rows if k not in existing and k not in created]
    if raced:  # created by a signup between our look-up and our insert
        existing.update(_existing(session, raced))
    statuses = _subscription_statuses(
        session, options.list_id, [known.id for known in existing.values()]
    )
    # Someone who left the list is refused whole: not even their details are touched.
    filled = _fill_blanks(session, rows, {
        key: known for key, known in existing.items()
        if statuses.get(known.id) != SubscriptionStatus.unsubscribed
    }, now)
    _add_tags(session, [
        (created[key] if key in created else existing[key].id, row.tags)
        for key, row in rows.items()
        if row.tags and (key in created or (
            key in existing
            and statuses.get(existing[key].id) != SubscriptionStatus.unsubscribed))
    ])
    wanted = SubscriptionStatus.confirmed if options.confirmed else SubscriptionStatus.pending
    to_add = [] if complete else list(created.values())
    to_confirm: list[int] = []
    unsubscribed: set[int] = set()
    for known in existing.values():
        step = subscription_step(statuses.get(known.id), options.confirmed)
        if step == "add":
            to_add.append(known.id)
        elif step == "refuse":
            unsubscribed.add(known.id)
        elif step == "confirm":
            to_confirm.append(known.id)
    added = _add_subscriptions(session, options.list_id, to_add, wanted, now)
    confirmed = _confirm_pending(session, options.list_id, to_confirm, now)
    _record_consent(session, options, added | confirmed, now)
    if not options.confirmed:
        new_ids = set(created.values())
        counts.mails_queued = _queue_confirmations(
            session, options.list_id, added | new_ids, new_ids, settings, now
        )

    for key, row in rows.items():
        if key in created:
            counts.created += 1
            continue
        sid = existing[key].id
        if sid in unsubscribed:
            problems.append(Problem(row.line, row.email, UNSUBSCRIBED, refused=True))
            counts.refused += 1
        elif sid in added or sid in confirmed or sid in filled:
            counts.updated += 1
        else:
            counts.skipped += 1
    problems.sort(key=lambda p: p.line)
    return ChunkResult(counts, problems, last_line)


class Known(NamedTuple):
    """A subscriber already in the database, as far as a merge needs it."""

    id: int
    first_name: str
    last_name: str
    postal_code: str
    state: str
    attributes: str  # JSON text: parsed only when the file brings attributes
    county: str = ""
    timezone: str = ""


def _existing(session: Session, keys: list[str]) -> dict[str, Known]:
    if not keys:
        return {}
    s = SUBSCRIBERS.c
    query = select(s.email_key, s.id, s.first_name, s.last_name, s.postal_code, s.state,
                   sql_cast(s.attributes, Text), s.county, s.timezone,
                   ).where(one_of(session, s.email_key, keys))
    return {key: Known(*rest) for key, *rest in session.execute(query).all()}


def _create_subscribers(session: Session, options: ImportOptions, new: list[Row],
                        now: Any) -> tuple[dict[str, int], bool]:
    """Insert the new addresses; return {key: id} and whether their subscriptions and
    consent records were written too (PostgreSQL does all three in one statement)."""
    if not new:
        return {}, True
    status = SubscriptionStatus.confirmed if options.confirmed else SubscriptionStatus.pending
    if is_pg(session):
        result = session.execute(_PG_NEW_SUBSCRIBERS, {
            "now": now, "sep": SEP, "count": len(new),
            "email": pg_column([r.email for r in new]),
            "email_key": pg_column([r.key for r in new]),
            "first_name": pg_column([r.first_name for r in new]),
            "last_name": pg_column([r.last_name for r in new]),
            "postal_code": pg_column([r.postal_code for r in new]),
            "state": pg_column([r.state for r in new]),
            "county": pg_column([r.county for r in new]),
            "timezone": pg_column([r.timezone for r in new]),
            "locale": pg_column([r.locale or "en" for r in new]),
            "attributes": pg_column(
                [json.dumps(r.attributes) if r.attributes else "{}" for r in new]
            ),
            "status": status.value,
            "confirmed_at": now if options.confirmed else None,
            **consent_fields(options.action, options.evidence, options.list_id,
                             options.consent_note),
        })
        return {key: sid for sid, key in result}, True
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
            "county": r.county, "timezone": r.timezone, "locale": r.locale or "en",
            "status": SubscriberStatus.active,
            "attributes": r.attributes, "created_at": now, "updated_at": now,
        }
        for r in new
    ]
    return {key: sid for sid, key in session.execute(statement, params)}, False


def filled_details(known: Known, row: Row) -> dict[str, Any] | None:
    """A known person's details once a row of a file is merged in (`merge_details`,
    `merge_attributes`: the rules a staff addition follows too), or None when it changes
    nothing."""
    before = Details(known.first_name, known.last_name, known.postal_code, known.state,
                     known.county, known.timezone)
    after = merge_details(before, Details(row.first_name, row.last_name, row.postal_code,
                                          row.state, row.county, row.timezone))
    parsed = json.loads(known.attributes or "{}") if row.attributes or after != before else {}
    attributes = parsed if isinstance(parsed, dict) else {}
    merged = merge_attributes(attributes, row.attributes) if row.attributes else attributes
    if after == before and merged is attributes:
        return None
    return {**asdict(after), "attributes": merged}


def _fill_blanks(session: Session, rows: dict[str, Row], existing: dict[str, Known],
                 now: Any) -> set[int]:
    """Known people: add details the database lacks, never overwrite one it has."""
    changes: list[dict[str, Any]] = []
    for key, known in existing.items():
        details = filled_details(known, rows[key])
        if details is not None:
            changes.append({"b_id": known.id, "b_first": details["first_name"],
                            "b_last": details["last_name"], "b_postal": details["postal_code"],
                            "b_state": details["state"], "b_county": details["county"],
                            "b_timezone": details["timezone"],
                            "b_attributes": details["attributes"]})
    if changes:
        changes.sort(key=lambda c: c["b_id"])  # lock order, as for inserts
        s = SUBSCRIBERS.c
        statement = (
            update(SUBSCRIBERS)
            .where(s.id == bindparam("b_id"))
            .values(first_name=bindparam("b_first"), last_name=bindparam("b_last"),
                    postal_code=bindparam("b_postal"), state=bindparam("b_state"),
                    county=bindparam("b_county"), timezone=bindparam("b_timezone"),
                    attributes=bindparam("b_attributes", type_=s.attributes.type),
                    updated_at=now)
        )
        session.execute(statement, changes)
    return {c["b_id"] for c in changes}


def _add_tags(session: Session, wanted: list[tuple[int, list[str]]]) -> None:
    """Add each person's tags from the file (never removes one). A person keeps at most
    TAGS_MAX tags: the file's tags beyond that are not added (in alphabetical order)."""
    if not wanted:
        return
    t = TAGS.c
    have: dict[int, set[str]] = {sid: set() for sid, _ in wanted}
    query = select(t.subscriber_id, t.tag).where(
        one_of(session, t.subscriber_id, list(have), ids=True))
    for sid, tag in session.execute(query):
        have[sid].add(tag)
    pairs: list[dict[str, Any]] = []
    for sid, tags in sorted(wanted):
        room = TAGS_MAX - len(have[sid])
        new = [tag for tag in tags if tag not in have[sid]][:max(0, room)]
        have[sid].update(new)
        pairs.extend({"subscriber_id": sid, "tag": tag} for tag in new)
    if pairs:
        session.execute(
            insert_for(session, TAGS).on_conflict_do_nothing(
                index_elements=["subscriber_id", "tag"]), pairs)


def _subscription_statuses(session: Session, list_id: int,
                           subscriber_ids: list[int]) -> dict[int, SubscriptionStatus]:
    if not subscriber_ids:
        return {}
    t = SUBSCRIPTIONS.c
    query = select(t.subscriber_id, t.status).where(
        t.list_id == list_id, one_of(session, t.subscriber_id, subscriber_ids, ids=True)
    )
    return {sid: SubscriptionStatus(status) for sid, status in session.execute(query)}


def _add_subscriptions(session: Session, list_id: int, subscriber_ids: list[int],
                       status: SubscriptionStatus, now: Any) -> set[int]:
    if not subscriber_ids:
        return set()
    confirmed_at = now if status == SubscriptionStatus.confirmed else None
    if is_pg(session):
        result = session.execute(_PG_SUBSCRIPTIONS, {
            "ids": pg_ids(sorted(subscriber_ids)), "list_id": list_id, "status": status.value,
            "now": now,
            "confirmed_at": confirmed_at,
        })
        return set(result.scalars())
    t = SUBSCRIPTIONS.c
    statement = (
        insert_for(session, SUBSCRIPTIONS)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
        .returning(t.subscriber_id)
    )
    params = [
        {"subscriber_id": sid, "list_id": list_id, "status": status, "created_at": now,
         "updated_at": now, "confirmed_at": confirmed_at, "unsubscribed_at": None}
        for sid in sorted(subscriber_ids)
    ]
    return set(session.execute(statement, params).scalars())


def _confirm_pending(session: Session, list_id: int, subscriber_ids: list[int],
                     now: Any) -> set[int]:
    if not subscriber_ids:
        return set()
    t = SUBSCRIPTIONS.c
    statement = (
        update(SUBSCRIPTIONS)
        .where(t.list_id == list_id,
               one_of(session, t.subscriber_id, subscriber_ids, ids=True),
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
    if is_pg(session):
        session.execute(_PG_CONSENT, {**base, "ids": pg_ids(sorted(subscriber_ids)), "now": now})
        return
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
    if is_pg(session):
        mail_ids = list(session.execute(_PG_MAILS, {
            "ids": pg_ids(allowed), "now": now, "list_ids": str(list_id)}).scalars())
    else:
        mail_ids = list(
            session.execute(
                insert_for(session, MAILS).returning(m.id),
                [{"subscriber_id": sid, "at": now, "list_ids": str(list_id),
                  "result": "queued"} for sid in allowed],
            ).scalars()
        )
    for start in range(0, len(mail_ids), MAIL_BATCH):
        enqueue_after_commit(
            session, SEND_CONFIRMATIONS, sorted(mail_ids[start:start + MAIL_BATCH]),
            queue="default", retry_intervals=MAIL_RETRY,
        )
    return len(mail_ids)
