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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..lists import lists_by_ids
from ..models import MailingList, Subscriber, Subscription, SubscriptionStatus
from ..subscribers import Evidence, record_consent

UNDO_WINDOW = timedelta(minutes=30)
ACTIVE = (SubscriptionStatus.pending, SubscriptionStatus.confirmed)


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


def undo(
    session: Session, subscriber: Subscriber, list_ids: list[int] | None, evidence: Evidence
) -> Change:
    """Restore what an unsubscribe stopped, if still within UNDO_WINDOW. The caller commits."""
    change = Change()
    for sub in undoable(session, subscriber.id, list_ids, lock=True):
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
