"""Who a campaign reaches.

confirmed subscriptions in the chosen lists
  ∩ segment (states, postal-code prefixes, locales; each part optional)
  − subscribers marked bounced or complained
  − suppressed addresses (bounces, complaints, manual; erased people have no row left)

Each person is selected once (a semi-join on subscriptions, never a join), so being on two
chosen lists does not mean two mails. The query runs on `ix_subscriptions_list_status`
and the subscriber primary key; the count endpoint runs the same query as `count(*)`.

Suppressions are matched here by the stored address (`suppressions.email`, which bounces,
complaints and manual entries keep), and again by `email_hash` for every recipient just
before their batch goes (`sending.recheck`), which also covers hash-only entries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from ..models import (
    Campaign,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)


def audience_query(list_ids: list[int], segment: dict[str, Any] | None) -> Select[Any]:
    """SELECT subscribers.id of the audience (unordered)."""
    segment = segment or {}
    conditions: list[Any] = [
        Subscriber.status == SubscriberStatus.active,
        exists().where(
            Subscription.subscriber_id == Subscriber.id,
            Subscription.list_id.in_(list_ids or [-1]),
            Subscription.status == SubscriptionStatus.confirmed,
        ),
        ~exists().where(
            and_(Suppression.email != "", func.lower(Suppression.email) == Subscriber.email_key)
        ),
    ]
    states = [s.upper() for s in segment.get("states") or []]
    if states:
        conditions.append(Subscriber.state.in_(states))
    prefixes = [p for p in segment.get("postal_prefixes") or [] if p]
    if prefixes:
        conditions.append(or_(*(Subscriber.postal_code.startswith(p, autoescape=True)
                                for p in prefixes)))
    locales = list(segment.get("locales") or [])
    if locales:
        conditions.append(Subscriber.locale.in_(locales))
    return select(Subscriber.id).where(*conditions)


def campaign_audience(campaign: Campaign) -> Select[Any]:
    return audience_query([ml.id for ml in campaign.lists], campaign.segment)


def count_audience(session: Session, list_ids: list[int], segment: dict[str, Any] | None) -> int:
    """How many people `audience_query` selects (the admin's live count of an unsaved draft)."""
    query = audience_query(list_ids, segment)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def audience_count(session: Session, campaign: Campaign) -> int:
    return count_audience(session, [ml.id for ml in campaign.lists], campaign.segment)
