"""Applying stored events: deliveries, suppressions, subscriptions, statistics.

`process_pending_events` runs as an RQ job on the `default` queue. It claims a chunk of
unprocessed rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), applies their effects and marks
them processed in the same transaction: a crash rolls everything back and the rows stay
pending, so running the job twice (or two workers at once) never applies an event twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from .. import config
from ..config import Settings
from ..db import MAX_ID, insert_for, parse_id, utcnow
from ..models import (
    Campaign,
    CampaignEventStat,
    CampaignEventUnique,
    CampaignLinkStat,
    Delivery,
    MailingList,
    SoftBounce,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    WebhookEvent,
    campaign_lists,
)
from ..observability import metrics
from ..outbound import (
    SUBSCRIBER_BOUNCED,
    SUBSCRIBER_COMPLAINED,
    SUBSCRIBER_UNSUBSCRIBED,
    emit_for_subscriber,
)
from ..queue import enqueue_after_commit
from ..subscribers import (
    Evidence,
    InvalidEmail,
    email_hash,
    find_subscriber,
    normalise_email,
    record_consent,
)

log = logging.getLogger(__name__)

CHUNK = 2000
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


@dataclass(frozen=True)
class ParsedEvent:
    name: str
    campaign_id: int | None
    subscriber_id: int | None
    at: datetime
    email: str
    payload: dict[str, Any]

    @property
    def reason(self) -> str:
        p = self.payload
        return str(p.get("reason") or p.get("response") or p.get("status") or "")[:1000]


def _int_or_none(value: Any) -> int | None:
    """A row id from an event (a number, or digits as text), or None if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value <= MAX_ID else None
    return parse_id(value.strip()) if isinstance(value, str) else None


def parse(payload: dict[str, Any], received_at: datetime) -> ParsedEvent:
    timestamp = payload.get("timestamp")
    try:
        at = datetime.fromtimestamp(int(timestamp), UTC) if timestamp is not None else received_at
    except (TypeError, ValueError, OverflowError, OSError):
        at = received_at
    return ParsedEvent(
        name=str(payload.get("event", ""))[:32],
        campaign_id=_int_or_none(payload.get("campaign_id")),
        subscriber_id=_int_or_none(payload.get("subscriber_id")),
        at=at,
        email=str(payload.get("email", ""))[:254],
        payload=payload,
    )


def has_pending_events(session: Session) -> bool:
    pending = select(WebhookEvent.id).where(WebhookEvent.processed_at.is_(None)).limit(1)
    return session.scalar(pending) is not None


def queue_processing(session: Session) -> None:
    """Queue the job that applies pending events, once `session` commits."""
    enqueue_after_commit(session, PROCESS_JOB, queue="default", retry_intervals=PROCESS_RETRY)


def process_pending_events(session: Session) -> int:
    """Apply every pending event, a chunk per transaction. Returns how many."""
    session.expire_all()  # reload whatever this thread's session may hold from before
    total = 0
    while True:
        rows = session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.processed_at.is_(None))
            .order_by(WebhookEvent.id)
            .limit(CHUNK)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            session.commit()
            return total
        outcomes = apply_events(session, [parse(r.payload, r.received_at) for r in rows])
        now = utcnow()
        for row in rows:
            row.processed_at = now
        session.commit()
        for (name, outcome), n in outcomes.items():
            metrics().webhook_events.labels(name, outcome).inc(n)
        total += len(rows)


def apply_events(session: Session, events: list[ParsedEvent]) -> Counter[tuple[str, str]]:
    settings = config.settings()
    known_campaigns = _existing_campaigns(session, {e.campaign_id for e in events})
    outcomes: Counter[tuple[str, str]] = Counter()
    for_stats = [e for e in events if e.campaign_id in known_campaigns]
    _count_statistics(session, for_stats)
    _advance_deliveries(session, for_stats)
    for event in events:
        outcome = _apply_to_subscriber(session, settings, event, known_campaigns)
        outcomes[(event.name, outcome)] += 1
    return outcomes


def _existing_campaigns(session: Session, ids: Iterable[int | None]) -> set[int]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return set()
    return set(session.scalars(select(Campaign.id).where(Campaign.id.in_(wanted))))


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _recipient(event: ParsedEvent) -> str:
    if event.subscriber_id is not None:
        return str(event.subscriber_id)
    return "h:" + hashlib.sha256(event.email.lower().encode()).hexdigest()[:60]


def _count_statistics(session: Session, events: list[ParsedEvent]) -> None:
    """Add the chunk's events to the hourly counters, unique markers and link counts."""
    buckets: Counter[tuple[int, datetime, str]] = Counter()
    uniques: set[tuple[int, str, str]] = set()
    links: Counter[tuple[int, str]] = Counter()
    for e in events:
        assert e.campaign_id is not None
        buckets[(e.campaign_id, _hour(e.at), e.name)] += 1
        if e.name in UNIQUE_EVENTS:
            uniques.add((e.campaign_id, e.name, _recipient(e)))
        if e.name == "click" and e.payload.get("url"):
            links[(e.campaign_id, str(e.payload["url"])[:4000])] += 1
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
    if uniques:
        stmt = insert_for(session, cast(Table, CampaignEventUnique.__table__))
        stmt = stmt.on_conflict_do_nothing()
        session.execute(stmt, [
            {"campaign_id": c, "event": name, "recipient": r} for c, name, r in sorted(uniques)
        ])
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
            if event.name in {"dropped", "bounce", "blocked", "deferred"}:
                delivery.reason = event.reason


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


