"""Applying stored events: deliveries, suppressions, subscriptions, statistics.

`process_pending_events` runs as an RQ job on the `default` queue. It locks the oldest
stored batches (`FOR UPDATE SKIP LOCKED`), keeps the events whose keys are new
(`ingest.fresh_events`), applies their effects and deletes the batches, all in one
transaction: a crash rolls everything back and the batches stay, so running the job twice
(or two workers at once) never applies an event twice.

The effects are set-based: one statement per kind of effect per chunk (the hourly
counters, the unique markers, the links, the per-locale/state breakdowns, the deliveries'
`event_status`), not one per event; so are hard bounces and spam reports naming a
subscriber id (`_apply_in_bulk`). The other events that change a person (unsubscribes, soft
bounces, events naming only an address, a person's second such event in a chunk) go one by
one, in order.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Table, case, delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from .. import config
from ..bulk import SEP, one_of, pg_column, pg_ids
from ..config import Settings
from ..db import MAX_ID, commit_quickly, insert_for, is_pg, parse_id, utcnow
from ..models import (
    UNIQUE_ACTION,
    UNIQUE_HARD_BOUNCE,
    UNIQUE_SPAM_REPORT,
    Campaign,
    CampaignBreakdown,
    CampaignEventStat,
    CampaignEventUnique,
    CampaignLinkStat,
    ConsentRecord,
    Delivery,
    MailingList,
    SoftBounce,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    WebhookBatch,
    campaign_lists,
)
from ..observability import metrics
from ..outbound import (
    SUBSCRIBER_BOUNCED,
    SUBSCRIBER_COMPLAINED,
    SUBSCRIBER_UNSUBSCRIBED,
    emit_for_subscriber,
    wanted,
)
from ..queue import enqueue_after_commit
from ..subscribers import (
    Evidence,
    InvalidEmail,
    consent_fields,
    email_hash,
    email_hasher,
    find_subscriber,
    normalise_email,
    record_consent,
)
from .ingest import fresh_events, load_batch

log = logging.getLogger(__name__)

CHUNK = 20000
# A failed run (e.g. two workers suppressing the same address at once) is retried; its
# rows stay pending until then.
PROCESS_RETRY = (10, 60, 300, 1800)
# The job that applies stored events (enqueued by name: no domain module imports a job).
PROCESS_JOB = "service.jobs.webhooks.process_events"
EVIDENCE = Evidence(actor="webhook", source="sendgrid-event-webhook", endpoint="webhooks.sendgrid")
# The furthest a delivery has got: a later event never moves its status backwards
# (SendGrid does not promise order: an open can arrive before its delivered).
STATUS_RANK = {
    "processed": 1, "deferred": 2, "blocked": 3, "delivered": 4, "open": 5, "click": 6,
    "unsubscribe": 7, "group_unsubscribe": 7, "dropped": 8, "bounce": 8, "spamreport": 9,
}
UNIQUE_EVENTS = {"open", "click"}
SOFT_EVENTS = {"blocked", "deferred"}
# Unique marker → the breakdown figure it adds to.
BREAKDOWN_OF_UNIQUE = {"open": "unique_opens", "click": "unique_clicks",
                       UNIQUE_ACTION: "actions"}
# Called with the campaigns whose delivered, bounce or spam-report figures a chunk
# changed, inside the chunk's transaction (the circuit breaker; wired in by the job).
ChunkHook = Callable[[Session, set[int]], Any]


class ParsedEvent(NamedTuple):
    """What applying needs of one event (a tuple: a storm makes millions of them)."""

    name: str
    campaign_id: int | None
    subscriber_id: int | None
    at: datetime
    hour: datetime  # `at` to the hour: the statistics' bucket
    email: str
    payload: dict[str, Any]

    @property
    def reason(self) -> str:
        p = self.payload
        text = str(p.get("reason") or p.get("response") or p.get("status") or "")[:1000]
        return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def _int_or_none(value: Any) -> int | None:
    """A row id from an event (a number, or digits as text), or None if it is not one."""
    if type(value) is str:  # custom args arrive as text: the common case first
        return parse_id(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value <= MAX_ID else None
    return None


@functools.lru_cache(maxsize=65536)
def _moment(timestamp: int) -> datetime:
    """A whole-second UTC timestamp as a datetime (a storm repeats each second thousands of
    times)."""
    return datetime.fromtimestamp(timestamp, UTC)


def parse(payload: dict[str, Any], received_at: datetime) -> ParsedEvent:
    timestamp = payload.get("timestamp")
    try:
        second = int(timestamp) if timestamp is not None else None
        at = _moment(second) if second is not None else received_at
        hour = _moment(second - second % 3600) if second is not None else _hour(at)
    except (TypeError, ValueError, OverflowError, OSError):
        at, hour = received_at, _hour(received_at)
    return ParsedEvent(
        name=str(payload.get("event", ""))[:32],
        campaign_id=_int_or_none(payload.get("campaign_id")),
        subscriber_id=_int_or_none(payload.get("subscriber_id")),
        at=at,
        hour=hour,
        email=str(payload.get("email", ""))[:254],
        payload=payload,
    )


def has_pending_events(session: Session) -> bool:
    return session.scalar(select(WebhookBatch.id).limit(1)) is not None


def queue_processing(session: Session) -> None:
    """Queue the job that applies pending events, once `session` commits."""
    enqueue_after_commit(session, PROCESS_JOB, queue="default", retry_intervals=PROCESS_RETRY)


def process_pending_events(session: Session, after_chunk: ChunkHook | None = None) -> int:
    """Apply every stored batch, oldest first, about CHUNK events per transaction; each
    batch is deleted in the transaction that applies it. Returns how many new events.

    Two workers share the work: a batch another transaction holds is skipped, and an event
    in two batches (SendGrid re-posting with other neighbours) is applied by whichever
    transaction stores its keys first."""
    session.expire_all()  # reload whatever this thread's session may hold from before
    total = 0
    while True:
        claimed = claim_batches(session)
        if not claimed:
            session.commit()
            return total
        events: list[ParsedEvent] = []
        outcomes: Counter[tuple[str, str]] = Counter()
        for _id, body, received_at in claimed:
            fresh, duplicates = fresh_events(session, load_batch(body))
            events += [parse(payload, received_at) for payload in fresh]
            outcomes.update({(name, "duplicate"): n for name, n in duplicates.items()})
        outcomes += apply_events(session, events, after_chunk)
        session.execute(delete(WebhookBatch).where(
            WebhookBatch.id.in_([row[0] for row in claimed])))
        # Safe to redo: a commit the database server loses takes the batches' deletion
        # with it, so they are applied again, whole (SendGrid already has its 200).
        commit_quickly(session)
        for (name, outcome), n in outcomes.items():
            metrics().webhook_events.labels(name, outcome).inc(n)
        total += len(events)


def claim_batches(session: Session) -> list[Any]:
    """Lock the oldest waiting batches no other worker holds, about CHUNK events' worth
    (at least one): their (id, body, received_at), oldest first.

    How many rows that is comes from the sizes at the head of the queue (read without
    locks); the locking read then skips the rows another worker holds, so two workers
    take different batches instead of both waiting for, or giving up on, the first."""
    sizes = session.scalars(
        select(WebhookBatch.events).order_by(WebhookBatch.id).limit(100)).all()
    count = total = 0
    for size in sizes:
        if count and total + size > CHUNK:
            break
        count += 1
        total += size
    if not count:
        return []
    return list(session.execute(
        select(WebhookBatch.id, WebhookBatch.body, WebhookBatch.received_at)
        .order_by(WebhookBatch.id).limit(count).with_for_update(skip_locked=True)
    ).all())


def apply_events(session: Session, events: list[ParsedEvent],
                 after_chunk: ChunkHook | None = None) -> Counter[tuple[str, str]]:
    settings = config.settings()
    campaigns = _existing_campaigns(session, {e.campaign_id for e in events})
    known_campaigns = set(campaigns)
    outcomes: Counter[tuple[str, str]] = Counter()
    for_stats = [e for e in events if e.campaign_id in known_campaigns]
    _advance_deliveries(session, for_stats)
    one_by_one = _apply_in_bulk(session, settings, events, known_campaigns, outcomes)
    for event in one_by_one:
        outcome = _apply_to_subscriber(session, settings, event, known_campaigns)
        outcomes[(event.name, outcome)] += 1
    # Last, so the counter rows every worker updates (a campaign's hourly counts and
    # breakdowns) stay locked only until the commit that follows: taken first, they made
    # a second worker wait out the whole of the first one's chunk.
    _count_statistics(session, for_stats, campaigns)
    if after_chunk is not None:
        watched = {e.campaign_id for e in for_stats if e.name in BREAKER_EVENTS}
        if watched:
            after_chunk(session, cast(set[int], watched))
    return outcomes


BREAKER_EVENTS = {"delivered", "bounce", "spamreport"}


def _existing_campaigns(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """{campaign id: its normalised action URL ("" when none)} of the ids that exist."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(Campaign.id, Campaign.action_url).where(Campaign.id.in_(wanted)))
    return {cid: normalise_url(url) if url else "" for cid, url in rows}


# Query parameters that only say where a click came from: not part of the link's identity.
TRACKING_PARAMS = ("utm_", "mc_", "fbclid", "gclid")
CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def normalise_url(url: str) -> str:
    """A link as compared with the action URL: scheme and host lower-case, default port,
    trailing slash, fragment and tracking parameters (utm_…) dropped, parameters sorted."""
    if CONTROL_OR_SPACE.search(url):  # never "cleaned" into a match (urlsplit strips some)
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port and (scheme, port) not in {("http", 80), ("https", 443)}:
        host = f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not k.lower().startswith(TRACKING_PARAMS))
    return urlunsplit((scheme, host, parts.path.rstrip("/"), urlencode(query), ""))


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _recipient(event: ParsedEvent) -> str:
    if event.subscriber_id is not None:
        return str(event.subscriber_id)
    return "h:" + hashlib.sha256(event.email.lower().encode()).hexdigest()[:60]


def _count_statistics(session: Session, events: list[ParsedEvent],
                      campaigns: dict[int, str]) -> None:
    """Add the chunk's events to the hourly counters, unique markers, link counts and the
    per-locale/state breakdowns: one statement each."""
    buckets: Counter[tuple[int, datetime, str]] = Counter()
    uniques: set[tuple[int, str, str]] = set()
    links: Counter[tuple[int, str]] = Counter()
    delivered: Counter[tuple[int, int]] = Counter()
    for e in events:
        assert e.campaign_id is not None
        buckets[(e.campaign_id, e.hour, e.name)] += 1
        name = e.name
        if name in UNIQUE_EVENTS:
            uniques.add((e.campaign_id, name, _recipient(e)))
        elif name == "delivered" and e.subscriber_id is not None:
            delivered[(e.campaign_id, e.subscriber_id)] += 1
        elif name == "bounce" and e.payload.get("type") != "blocked":
            uniques.add((e.campaign_id, UNIQUE_HARD_BOUNCE, _recipient(e)))
        elif name == "spamreport":
            uniques.add((e.campaign_id, UNIQUE_SPAM_REPORT, _recipient(e)))
        if name == "click" and e.payload.get("url"):
            url = str(e.payload["url"])[:4000].replace("\x00", "\ufffd")  # no NUL in text
            links[(e.campaign_id, url)] += 1
            action = campaigns.get(e.campaign_id)
            if action and normalise_url(url) == action:
                uniques.add((e.campaign_id, UNIQUE_ACTION, _recipient(e)))
    if buckets:
        stmt = insert_for(session, cast(Table, CampaignEventStat.__table__))
        stmt = stmt.on_conflict_do_update(
            index_elements=["campaign_id", "hour", "event"],
            set_={"count": CampaignEventStat.__table__.c.count + stmt.excluded.count},
        )
        session.execute(stmt, [
            {"campaign_id": c, "hour": h, "event": name, "count": n}
            for (c, h, name), n in sorted(buckets.items())
        ])
    new_uniques = _mark_uniques(session, sorted(uniques)) if uniques else []
    if links:
        stmt = insert_for(session, cast(Table, CampaignLinkStat.__table__))
        stmt = stmt.on_conflict_do_update(
            index_elements=["campaign_id", "url_hash"],
            set_={"clicks": CampaignLinkStat.__table__.c.clicks + stmt.excluded.clicks},
        )
        session.execute(stmt, [
            {"campaign_id": c, "url_hash": hashlib.sha256(url.encode()).hexdigest(),
             "url": url, "clicks": n}
            for (c, url), n in sorted(links.items())
        ])
    _count_breakdowns(session, delivered, new_uniques)


# PostgreSQL: the chunk's unique markers as three split strings, one statement.
MARK_UNIQUES_PG = text(
    "INSERT INTO campaign_event_uniques (campaign_id, event, recipient) "
    "SELECT c, e, r FROM unnest(string_to_array(:c, ',')::int[], string_to_array(:e, :sep), "
    "string_to_array(:r, :sep)) WITH ORDINALITY AS t(c, e, r, n) WHERE n <= :count "
    "ON CONFLICT DO NOTHING RETURNING campaign_id, event, recipient")


def _mark_uniques(session: Session, uniques: list[tuple[int, str, str]]
                  ) -> list[tuple[int, str, str]]:
    """Insert the (campaign, event, recipient) markers; the ones that were new."""
    if is_pg(session):
        rows = session.execute(MARK_UNIQUES_PG, {
            "c": pg_ids(c for c, _e, _r in uniques), "e": pg_column([e for _c, e, _r in uniques]),
            "r": pg_column([r for _c, _e, r in uniques]), "sep": SEP, "count": len(uniques)})
    else:
        table = cast(Table, CampaignEventUnique.__table__)
        rows = session.execute(
            insert_for(session, table).on_conflict_do_nothing().returning(
                table.c.campaign_id, table.c.event, table.c.recipient),
            [{"campaign_id": c, "event": e, "recipient": r} for c, e, r in uniques])
    return [(row[0], row[1], row[2]) for row in rows.all()]


def _count_breakdowns(session: Session, delivered: Counter[tuple[int, int]],
                      new_uniques: list[tuple[int, str, str]]) -> None:
    """Add delivered events and newly marked unique opens/clicks/actions to the campaign's
    per-locale and per-state counters (the subscriber's current locale and state).

    Kept as the events are applied: one look-up of the chunk's subscribers and one upsert,
    so reading the breakdowns is a read of a few rows, whatever the campaign's size."""
    figures: list[tuple[int, int, str]] = [(c, s, "delivered") for (c, s) in delivered]
    counts = dict(delivered)
    for c, event, recipient in new_uniques:
        figure = BREAKDOWN_OF_UNIQUE.get(event)
        subscriber_id = parse_id(recipient) if figure else None
        if figure and subscriber_id is not None:
            figures.append((c, subscriber_id, figure))
            counts[(c, subscriber_id)] = counts.get((c, subscriber_id), 0)
    if not figures:
        return
    ids = sorted({s for _c, s, _f in figures})
    people = {sid: (locale, state) for sid, locale, state in session.execute(
        select(Subscriber.id, Subscriber.locale, Subscriber.state)
        .where(one_of(session, Subscriber.id, ids, ids=True)))}
    totals: Counter[tuple[int, str, str, str]] = Counter()
    for c, sid, figure in figures:
        locale, state = people.get(sid, ("", ""))
        n = delivered[(c, sid)] if figure == "delivered" else 1
        totals[(c, "locale", locale or "", figure)] += n
        totals[(c, "state", state or "", figure)] += n
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for (c, dimension, key, figure), n in totals.items():
        row = rows.setdefault((c, dimension, key), {
            "campaign_id": c, "dimension": dimension, "key": key, "delivered": 0,
            "unique_opens": 0, "unique_clicks": 0, "actions": 0})
        row[figure] += n
    table = cast(Table, CampaignBreakdown.__table__)
    stmt = insert_for(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["campaign_id", "dimension", "key"],
        set_={name: table.c[name] + stmt.excluded[name]
              for name in ("delivered", "unique_opens", "unique_clicks", "actions")},
    )
    session.execute(stmt, [rows[k] for k in sorted(rows)])


def _advance_deliveries(session: Session, events: list[ParsedEvent]) -> None:
    """Move each delivery's `event_status` forward (never back) and keep failure reasons."""
    best: dict[tuple[int, int], ParsedEvent] = {}
    for e in events:
        if e.subscriber_id is None or e.name not in STATUS_RANK:
            continue
        key = (e.campaign_id or 0, e.subscriber_id)
        current = best.get(key)
        if current is None or STATUS_RANK[e.name] >= STATUS_RANK[current.name]:
            best[key] = e
    if not best:
        return
    if is_pg(session):
        _advance_deliveries_pg(session, best)
        return
    campaign_ids = {c for c, _ in best}
    subscriber_ids = {s for _, s in best}
    deliveries = session.scalars(
        select(Delivery).where(
            Delivery.campaign_id.in_(campaign_ids), Delivery.subscriber_id.in_(subscriber_ids)
        )
    )
    for delivery in deliveries:
        assert delivery.subscriber_id is not None
        event = best.get((delivery.campaign_id, delivery.subscriber_id))
        if event is None:
            continue
        if STATUS_RANK[event.name] > STATUS_RANK.get(delivery.event_status, 0):
            delivery.event_status = event.name
            if event.name in FAILURES:
                delivery.reason = event.reason


FAILURES = ("dropped", "bounce", "blocked", "deferred")


def _advance_deliveries_pg(session: Session, best: dict[tuple[int, int], ParsedEvent]) -> None:
    """One `UPDATE … FROM` the chunk's (campaign, subscriber, status) triples, moving a
    delivery only forward."""
    keys = sorted(best)
    statuses = [best[k].name for k in keys]
    reasons = [best[k].reason.replace(SEP, " ") if best[k].name in FAILURES else ""
               for k in keys]
    ranks = [STATUS_RANK[name] for name in statuses]
    current = case(STATUS_RANK, value=Delivery.event_status, else_=0)
    v = text(
        "SELECT * FROM unnest(string_to_array(:c, ',')::int[], "
        "string_to_array(:s, ',')::bigint[], string_to_array(:st, ','), "
        "string_to_array(:r, :sep), string_to_array(:rk, ',')::int[]) "  # r: one extra ""
        "AS v(campaign_id, subscriber_id, status, reason, rank)"
    ).columns(
        campaign_id=Delivery.campaign_id.type, subscriber_id=Delivery.subscriber_id.type,
        status=Delivery.event_status.type, reason=Delivery.reason.type,
        rank=Delivery.campaign_id.type,
    ).subquery("v")
    session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == v.c.campaign_id,
               Delivery.subscriber_id == v.c.subscriber_id, v.c.rank > current)
        .values(event_status=v.c.status,
                reason=case((v.c.status.in_(FAILURES), v.c.reason), else_=Delivery.reason))
        .execution_options(synchronize_session=False),
        {"c": pg_ids(c for c, _ in keys), "s": pg_ids(s for _, s in keys),
         "st": ",".join(statuses), "r": pg_column(reasons), "sep": SEP,
         "rk": ",".join(map(str, ranks))},
    )


PERSON_EVENTS = {"bounce", "spamreport", "unsubscribe", "group_unsubscribe", *SOFT_EVENTS}


def _is_hard(event: ParsedEvent) -> bool:
    return event.name == "spamreport" or (
        event.name == "bounce" and event.payload.get("type") != "blocked")


def _apply_in_bulk(session: Session, settings: Settings, events: list[ParsedEvent],
                   known_campaigns: set[int], outcomes: Counter[tuple[str, str]]
                   ) -> list[ParsedEvent]:
    """Hard bounces and spam reports naming a subscriber id, for people with no other
    event of their own in the chunk, in a few set-based statements: the same rows as the
    one-by-one path (suppression, status, consent records, unsubscriptions), with a
    storm's thousands of bounces no longer costing a round trip each. Events that change
    no person are only counted. Returns the events left for the one-by-one path (in their
    order)."""
    # Outgoing webhooks want an event per person who bounced or complained: the
    # one-by-one path writes them, so the shortcut steps aside while an endpoint wants them.
    shortcut = not wanted(session, SUBSCRIBER_BOUNCED, SUBSCRIBER_COMPLAINED,
                          SUBSCRIBER_UNSUBSCRIBED)
    per_person: Counter[int] = Counter(
        e.subscriber_id for e in events
        if e.name in PERSON_EVENTS and e.subscriber_id is not None)
    bulk: dict[int, ParsedEvent] = {}
    rest: list[ParsedEvent] = []
    for e in events:
        if e.name not in PERSON_EVENTS:
            outcomes[(e.name, "counted" if e.campaign_id in known_campaigns
                      else "unknown_campaign")] += 1
        elif (shortcut and e.subscriber_id is not None and per_person[e.subscriber_id] == 1
              and _is_hard(e)):
            bulk[e.subscriber_id] = e
        else:
            rest.append(e)
    if not bulk:
        return rest
    people = {sid: (email, status) for sid, email, status in session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.status)
        .where(one_of(session, Subscriber.id, sorted(bulk), ids=True)))}
    for sid, e in bulk.items():
        if sid not in people:  # erased (or never ours): counted, nothing stored
            outcomes[(e.name, "unknown_subscriber")] += 1
    found = {sid: e for sid, e in bulk.items() if sid in people}
    if not found:
        return rest
    now = utcnow()
    hasher = email_hasher(settings)
    hashes = {sid: hasher(people[sid][0]) for sid in found}
    known = set(session.scalars(select(Suppression.email_hash).where(
        one_of(session, Suppression.email_hash, sorted(set(hashes.values()))))))
    new_suppressions = {}
    for sid, e in found.items():
        if hashes[sid] not in known and hashes[sid] not in new_suppressions:
            reason = (SuppressionReason.complaint if e.name == "spamreport"
                      else SuppressionReason.bounce)
            new_suppressions[hashes[sid]] = {
                "email_hash": hashes[sid], "email": people[sid][0], "reason": reason,
                "source": f"sendgrid:{e.name}", "note": e.reason, "created_at": now}
    if new_suppressions:
        stmt = insert_for(session, cast(Table, Suppression.__table__)).on_conflict_do_nothing()
        session.execute(stmt, list(new_suppressions.values()))
    consents: list[dict[str, Any]] = []
    for target in (SubscriberStatus.bounced, SubscriberStatus.complained):
        ids = [sid for sid, e in found.items()
               if (e.name == "spamreport") == (target == SubscriberStatus.complained)
               and people[sid][1] != target]
        if not ids:
            continue
        session.execute(
            update(Subscriber).where(one_of(session, Subscriber.id, ids, ids=True))
            .values(status=target, updated_at=now)
            .execution_options(synchronize_session=False))
        consents += [{"subscriber_id": sid, "at": now, **consent_fields(
            target.value, EVIDENCE, None, _note(found[sid], f"subscriber status {target.value}"))}
            for sid in ids]
    complainers = sorted(sid for sid, e in found.items() if e.name == "spamreport")
    if complainers:
        unsubscribed = session.execute(
            update(Subscription)
            .where(one_of(session, Subscription.subscriber_id, complainers, ids=True),
                   Subscription.status != SubscriptionStatus.unsubscribed)
            .values(status=SubscriptionStatus.unsubscribed, unsubscribed_at=now, updated_at=now)
            .returning(Subscription.subscriber_id, Subscription.list_id)
            .execution_options(synchronize_session=False)).all()
        consents += [{"subscriber_id": sid, "at": now, **consent_fields(
            "unsubscribed", EVIDENCE, list_id, _note(found[sid], "unsubscribed"))}
            for sid, list_id in sorted(unsubscribed)]
    if consents:
        session.execute(insert(ConsentRecord), consents)
    for e in found.values():
        outcomes[(e.name, "applied")] += 1
    return rest


def _find_subscriber(session: Session, event: ParsedEvent) -> Subscriber | None:
    """The subscriber an event names. An erased one stays gone: no lookup by address then."""
    if event.subscriber_id is not None:
        return session.get(Subscriber, event.subscriber_id)
    try:
        return find_subscriber(session, normalise_email(event.email))
    except InvalidEmail:
        return None


def _apply_to_subscriber(
    session: Session, settings: Settings, event: ParsedEvent, known_campaigns: set[int]
) -> str:
    name = event.name
    if name not in {"bounce", "spamreport", "unsubscribe", "group_unsubscribe", *SOFT_EVENTS}:
        return "counted" if event.campaign_id in known_campaigns else "unknown_campaign"
    subscriber = _find_subscriber(session, event)
    if subscriber is None:
        # Counted in statistics, but nothing about the person is stored or restored.
        return "unknown_subscriber"
    # What the outgoing webhooks say about it (`service/outbound.py`): only real changes.
    about = {"campaign_id": event.campaign_id if event.campaign_id in known_campaigns
             else None, "reason": event.reason}
    if name == "bounce" and event.payload.get("type") != "blocked":
        _suppress(session, settings, subscriber, SuppressionReason.bounce, event)
        if _set_status(session, subscriber, SubscriberStatus.bounced, event):
            emit_for_subscriber(session, SUBSCRIBER_BOUNCED, subscriber,
                                _active_lists(subscriber), **about)
    elif name == "bounce" or name in SOFT_EVENTS:
        _soft_bounce(session, settings, subscriber, event)
    elif name == "spamreport":
        _suppress(session, settings, subscriber, SuppressionReason.complaint, event)
        changed = _set_status(session, subscriber, SubscriberStatus.complained, event)
        stopped = _unsubscribe(session, subscriber, None, event)
        if changed or stopped:
            emit_for_subscriber(session, SUBSCRIBER_COMPLAINED, subscriber, stopped, **about)
    else:
        list_ids: set[int] | None = None
        if name == "group_unsubscribe" and event.campaign_id in known_campaigns:
            in_campaign = campaign_lists.c.campaign_id == event.campaign_id
            list_ids = set(session.scalars(select(campaign_lists.c.list_id).where(in_campaign)))
        stopped = _unsubscribe(session, subscriber, list_ids, event)
        if stopped:
            emit_for_subscriber(session, SUBSCRIBER_UNSUBSCRIBED, subscriber, stopped,
                                channel=f"sendgrid:{name}", **about)
    return "applied"


def _active_lists(subscriber: Subscriber) -> list[MailingList]:
    return [s.mailing_list for s in subscriber.subscriptions
            if s.status != SubscriptionStatus.unsubscribed]


def _suppress(session: Session, settings: Settings, subscriber: Subscriber,
              reason: SuppressionReason, event: ParsedEvent) -> None:
    digest = email_hash(subscriber.email, settings)
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None:
        return
    session.add(Suppression(
        email_hash=digest, email=subscriber.email, reason=reason,
        source=f"sendgrid:{event.name}", note=event.reason,
    ))
    session.flush()


def _set_status(session: Session, subscriber: Subscriber, status: SubscriberStatus,
                event: ParsedEvent) -> bool:
    """Give `subscriber` the status; False when they already had it."""
    if subscriber.status == status:
        return False
    subscriber.status = status
    record_consent(session, subscriber, status.value, EVIDENCE,
                   note=_note(event, f"subscriber status {status.value}"))
    return True


def _unsubscribe(session: Session, subscriber: Subscriber, list_ids: set[int] | None,
                 event: ParsedEvent) -> list[MailingList]:
    """Stop the lists (None: all); the lists this stopped."""
    now = utcnow()
    stopped: list[MailingList] = []
    for subscription in subscriber.subscriptions:
        if list_ids is not None and subscription.list_id not in list_ids:
            continue
        if subscription.status == SubscriptionStatus.unsubscribed:
            continue
        subscription.status = SubscriptionStatus.unsubscribed
        subscription.unsubscribed_at = now
        record_consent(session, subscriber, "unsubscribed", EVIDENCE,
                       list_id=subscription.list_id, note=_note(event, "unsubscribed"))
        stopped.append(subscription.mailing_list)
    return stopped


def _soft_bounce(session: Session, settings: Settings, subscriber: Subscriber,
                 event: ParsedEvent) -> None:
    digest = email_hash(subscriber.email, settings)
    session.add(SoftBounce(email_hash=digest, event=event.name, reason=event.reason, at=event.at))
    session.flush()
    since = utcnow() - timedelta(seconds=settings.soft_bounce_window_seconds)
    recent = session.scalar(
        select(func.count()).select_from(SoftBounce)
        .where(SoftBounce.email_hash == digest, SoftBounce.at >= since)
    ) or 0
    if recent < settings.soft_bounce_limit:
        return
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None:
        return
    session.add(Suppression(
        email_hash=digest, email=subscriber.email, reason=SuppressionReason.soft_bounce,
        source=f"sendgrid:{event.name}",
        note=f"{recent} soft bounces in {settings.soft_bounce_window_seconds // 86400} days",
    ))
    record_consent(session, subscriber, "suppressed", EVIDENCE,
                   note=_note(event, f"{recent} soft bounces"))


def _note(event: ParsedEvent, what: str) -> str:
    campaign = f" (campaign {event.campaign_id})" if event.campaign_id else ""
    detail = f": {event.reason}" if event.reason else ""
    return f"SendGrid {event.name}{campaign} → {what}{detail}"[:2000]


