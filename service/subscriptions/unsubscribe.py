"""Unsubscribing and its undo.

An unsubscribe takes effect in the same transaction as the request: the campaign engine
reads `Subscription.status` when it builds each batch, so the next batch of a running
campaign no longer includes the person. Every change appends a consent record naming
the channel (`link`, `one-click`, `preferences`, ...).

Undo: for `UNDO_WINDOW` after an unsubscribe, the same signed link may restore the
subscriptions it stopped, without a new confirmation round — the person has just proven
control of the mailbox by using the link, and a mistaken click should be cheap to fix.
A subscription that was confirmed before goes back to confirmed; one that was still
pending goes back to pending.

An undo restores only what that one unsubscribe changed: the page's undo button carries
a signed receipt naming those lists (`Purpose.undo`, valid for the window), and a list
comes back only while the last entry of its consent ledger is still that link's
unsubscribe. What staff, a bounce or the person elsewhere stopped is never undone here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..lists import lists_by_ids
from ..models import ConsentRecord, MailingList, Subscriber, Subscription, SubscriptionStatus
from ..outbound import SUBSCRIBER_UNSUBSCRIBED, emit_for_subscriber
from ..subscribers import Evidence, record_consent
from ..tokens import UNDO_SECONDS, Purpose, TokenError, make_token, read_token

UNDO_WINDOW = timedelta(seconds=UNDO_SECONDS)
ACTIVE = (SubscriptionStatus.pending, SubscriptionStatus.confirmed)
# The consent-record notes of an unsubscribe through a mailed link (page or RFC 8058).
LINK_CHANNELS = ("link", "one-click")


@dataclass
class Scope:
    """What an unsubscribe link names: a subscriber and some lists (none = every list)."""

    subscriber: Subscriber
    lists: list[MailingList] = field(default_factory=list)

    @property
    def everything(self) -> bool:
        return not self.lists


@dataclass
class Change:
    """The subscriptions a request changed (empty when it was a repeat: idempotent)."""

    changed: list[MailingList] = field(default_factory=list)
    already: list[MailingList] = field(default_factory=list)


def load_scope(session: Session, subscriber_id: int, list_ids: list[int]) -> Scope | None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    return Scope(subscriber, lists_by_ids(session, list_ids))


def subscriptions_of(
    session: Session, subscriber_id: int, list_ids: list[int] | None = None, *, lock: bool = True
) -> list[Subscription]:
    query = select(Subscription).where(Subscription.subscriber_id == subscriber_id)
    if list_ids:
        query = query.where(Subscription.list_id.in_(list_ids))
    query = query.order_by(Subscription.list_id)
    return list(session.scalars(query.with_for_update(of=Subscription) if lock else query))


def unsubscribe(
    session: Session,
    subscriber: Subscriber,
    list_ids: list[int] | None,
    evidence: Evidence,
    channel: str,
) -> Change:
    """Stop the named lists (None or [] = everything). Idempotent. The caller commits."""
    change = Change()
    now = utcnow()
    for sub in subscriptions_of(session, subscriber.id, list_ids or None):
        if sub.status in ACTIVE:
            sub.status = SubscriptionStatus.unsubscribed
            sub.unsubscribed_at = now
            record_consent(
                session, subscriber, "unsubscribe", evidence, list_id=sub.list_id, note=channel
            )
            change.changed.append(sub.mailing_list)
        else:
            change.already.append(sub.mailing_list)
    if change.changed:
        emit_for_subscriber(session, SUBSCRIBER_UNSUBSCRIBED, subscriber, change.changed,
                            channel=channel)
    return change


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def undoable(session: Session, subscriber_id: int, list_ids: list[int] | None = None,
             *, lock: bool = False) -> list[Subscription]:
    """Subscriptions unsubscribed within UNDO_WINDOW (optionally limited to `list_ids`)."""
    cutoff = utcnow() - UNDO_WINDOW
    return [
        sub
        for sub in subscriptions_of(session, subscriber_id, list_ids, lock=lock)
        if sub.status == SubscriptionStatus.unsubscribed
        and sub.unsubscribed_at is not None
        and _aware(sub.unsubscribed_at) >= cutoff
    ]


def undo_receipt(subscriber: Subscriber, change: Change) -> str | None:
    """The signed receipt of an unsubscribe for its page's undo button (None: nothing
    changed, so nothing to undo)."""
    if not change.changed:
        return None
    return make_token(Purpose.undo, {"s": subscriber.id, "l": [ml.id for ml in change.changed]})


def lists_of_receipt(receipt: str, subscriber: Subscriber) -> list[int]:
    """The lists a receipt may restore: [] if it is forged, expired or someone else's."""
    try:
        payload = read_token(Purpose.undo, receipt)
    except TokenError:
        return []
    lists = payload.get("l")
    if payload["s"] != subscriber.id or not isinstance(lists, list):
        return []
    return [i for i in lists if isinstance(i, int) and not isinstance(i, bool)]


def _stopped_by_a_link(session: Session, subscriber_id: int, list_ids: list[int]) -> set[int]:
    """Of `list_ids`, those whose latest consent record is an unsubscribe by link."""
    rows = session.execute(
        select(ConsentRecord.list_id, ConsentRecord.action, ConsentRecord.note)
        .where(ConsentRecord.subscriber_id == subscriber_id,
               ConsentRecord.list_id.in_(list_ids))
        .order_by(ConsentRecord.id)
    ).all()
    latest = {row.list_id: (row.action, row.note) for row in rows}
    return {list_id for list_id, (action, note) in latest.items()
            if action == "unsubscribe" and note in LINK_CHANNELS}


def undo(
    session: Session, subscriber: Subscriber, list_ids: list[int], evidence: Evidence
) -> Change:
    """Restore what an unsubscribe by link stopped on `list_ids` (from its receipt), if
    still within UNDO_WINDOW and nothing changed those lists since. The caller commits."""
    change = Change()
    if not list_ids:
        return change
    candidates = undoable(session, subscriber.id, list_ids, lock=True)
    by_link = _stopped_by_a_link(session, subscriber.id, [sub.list_id for sub in candidates])
    for sub in candidates:
        if sub.list_id not in by_link:
            continue
        sub.status = (
            SubscriptionStatus.confirmed
            if sub.confirmed_at is not None
            else SubscriptionStatus.pending
        )
        sub.unsubscribed_at = None
        record_consent(
            session, subscriber, "resubscribe", evidence, list_id=sub.list_id, note="undo"
        )
        change.changed.append(sub.mailing_list)
    return change
