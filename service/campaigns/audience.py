"""Who a campaign reaches.

confirmed subscriptions in the chosen lists
  ∩ segment (`segments`: places, attributes, tags, engagement, join dates; all optional)
  − subscribers marked bounced or complained
  − suppressed addresses (bounces, complaints, manual; erased people have no row left)

Each person is selected once (a semi-join on subscriptions, never a join), so being on two
chosen lists does not mean two mails. The query runs on
`ix_subscriptions_list_status_subscriber` and the subscriber primary key; the count
endpoint runs the same query as `count(*)` for a segment, and without one subtracts the
few left out from the lists' members (`count_audience`).

Suppressions are matched here by the stored address (`suppressions.email`, which bounces,
complaints and manual entries keep), and again by `email_hash` for every recipient just
before their batch goes (`sending.recheck`), which also covers hash-only entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session, object_session

from ..db import settings_for_counts
from ..models import (
    Campaign,
    CampaignStatus,
    SavedSegment,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from .segments import conditions as segment_conditions
from .segments import stored


def audience_query(list_ids: list[int], segment: dict[str, Any] | None,
                   now: datetime | None = None) -> Select[Any]:
    """SELECT subscribers.id of the audience (unordered); `segment` as stored (its
    conditions come from `segments`, the one implementation of every filter)."""
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
    conditions += segment_conditions(stored(segment), now)
    return select(Subscriber.id).where(*conditions)


# Campaigns whose audience is not frozen yet: they follow their saved segment.
FOLLOWING = (CampaignStatus.draft, CampaignStatus.scheduled)


def is_frozen(campaign: Campaign) -> bool:
    """Whether the campaign's audience was frozen (sending started, `started_at` is set in
    the same transaction as the freeze): from then on its `segment` is the copy the freeze
    used. A campaign cancelled or failed before it started still shows the saved segment
    it followed."""
    return campaign.started_at is not None


def effective_segment(session: Session | None, campaign: Campaign) -> dict[str, Any]:
    """The segment a campaign's audience uses now: the saved segment it follows
    (`segment_id`) until its audience is frozen, its own `segment` otherwise."""
    session = session or object_session(campaign)
    if campaign.segment_id is not None and not is_frozen(campaign) and session:
        row = session.get(SavedSegment, campaign.segment_id)
        if row is not None:
            return dict(row.segment)
    return dict(campaign.segment or {})


def campaign_audience(campaign: Campaign) -> Select[Any]:
    return audience_query([ml.id for ml in campaign.lists], effective_segment(None, campaign))


def count_audience(session: Session, list_ids: list[int], segment: dict[str, Any] | None) -> int:
    """How many people `audience_query` selects (the admin's live count of an unsaved draft).

    Without a segment the count is taken the cheap way round: the lists' confirmed
    members (an index-only count on `subscriptions`) less the members who are suppressed
    or not active, two small sets found through indexes. The audience query itself
    reads every subscriber row for their status and address: at ten million that is a
    6.5 GB scan for a number (`docs/benchmarks.md`)."""
    with settings_for_counts(session):
        if not segment_conditions(stored(segment)):
            return _members(session, list_ids) - _members_left_out(session, list_ids)
        query = audience_query(list_ids, segment)
        return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _in_lists(list_ids: list[int]) -> list[Any]:
    return [Subscription.list_id.in_(list_ids or [-1]),
            Subscription.status == SubscriptionStatus.confirmed]


def _members(session: Session, list_ids: list[int]) -> int:
    """People with a confirmed subscription to any of the lists (each once)."""
    who = Subscription.subscriber_id
    counted = func.count() if len(list_ids) == 1 else func.count(who.distinct())
    return int(session.scalar(select(counted).where(*_in_lists(list_ids))) or 0)


def _members_left_out(session: Session, list_ids: list[int]) -> int:
    """Members the audience leaves out: those with a suppressed address, then those not
    active (`ix_subscribers_not_active`, a partial index of the few) whose address is not
    suppressed, so that nobody is subtracted twice.

    The suppressed members are found from the suppressions' side: each address looked up
    in `ix_subscribers_email_key_prefix`, which carries the subscriber's id (index only),
    and their membership probed in `ix_subscriptions_list_status_subscriber` (index
    only). PostgreSQL splits that over parallel workers, and the GROUP BY (not a
    DISTINCT, which it would not split) counts a person once however many suppressions
    name them."""
    member = exists().where(Subscription.subscriber_id == Subscriber.id, *_in_lists(list_ids))
    address = and_(Suppression.email != "", func.lower(Suppression.email) == Subscriber.email_key)
    suppressed = (select(Subscriber.id).select_from(Suppression).join(Subscriber, address)
                  .where(member).group_by(Subscriber.id).subquery())
    inactive = select(func.count()).select_from(Subscriber).where(
        Subscriber.status != SubscriberStatus.active, member, ~exists().where(address))
    return (int(session.scalar(select(func.count()).select_from(suppressed)) or 0)
            + int(session.scalar(inactive) or 0))


def audience_count(session: Session, campaign: Campaign) -> int:
    return count_audience(session, [ml.id for ml in campaign.lists],
                          effective_segment(session, campaign))
