"""The circuit breaker: a sending campaign whose hard bounces or spam reports run too high
is paused before it burns the sender's reputation.

The webhook job calls `check` after applying each chunk of events, inside the chunk's
transaction, with the campaigns whose delivered, bounce or spam-report figures changed.
Nothing is judged before `BREAKER_MIN_SAMPLE` mails are delivered; after that, distinct
hard-bounced recipients above `BREAKER_BOUNCE_RATE` of the delivered, or distinct spam
reporters above `BREAKER_COMPLAINT_RATE`, pause the campaign through the ordinary pause
(workers stop taking its batches) with the figures as the reason. Resuming is a person's
decision (the ordinary resume, which clears the reason).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import config
from ..models import (
    UNIQUE_HARD_BOUNCE,
    UNIQUE_SPAM_REPORT,
    Campaign,
    CampaignEventStat,
    CampaignEventUnique,
    CampaignStatus,
)
from .lifecycle import audit, transition

log = logging.getLogger(__name__)

ACTOR = "circuit-breaker"


def check(session: Session, campaign_ids: Iterable[int]) -> list[int]:
    """Pause each of these campaigns that is sending and over a threshold; their ids."""
    settings = config.settings()
    sending = session.scalars(select(Campaign.id).where(
        Campaign.id.in_(set(campaign_ids)), Campaign.status == CampaignStatus.sending)).all()
    paused = []
    for campaign_id in sorted(sending):
        delivered = int(session.scalar(
            select(func.coalesce(func.sum(CampaignEventStat.count), 0)).where(
                CampaignEventStat.campaign_id == campaign_id,
                CampaignEventStat.event == "delivered")) or 0)
        if delivered < max(settings.breaker_min_sample, 1):
            continue
        marks = dict(session.execute(
            select(CampaignEventUnique.event, func.count())
            .where(CampaignEventUnique.campaign_id == campaign_id,
                   CampaignEventUnique.event.in_([UNIQUE_HARD_BOUNCE, UNIQUE_SPAM_REPORT]))
            .group_by(CampaignEventUnique.event)).all())
        bounces = int(marks.get(UNIQUE_HARD_BOUNCE, 0))
        complaints = int(marks.get(UNIQUE_SPAM_REPORT, 0))
        reasons = []
        if bounces > settings.breaker_bounce_rate * delivered:
            reasons.append(
                f"{bounces:,} hard bounces in {delivered:,} delivered mails "
                f"({bounces / delivered:.1%}, above the limit of "
                f"{settings.breaker_bounce_rate:.1%})")
        if complaints > settings.breaker_complaint_rate * delivered:
            reasons.append(
                f"{complaints:,} spam reports in {delivered:,} delivered mails "
                f"({complaints / delivered:.2%}, above the limit of "
                f"{settings.breaker_complaint_rate:.2%})")
        if not reasons:
            continue
        reason = ("Paused automatically by the circuit breaker: " + "; ".join(reasons)
                  + ". Check the list's quality before resuming.")
        if transition(session, campaign_id, "pause", ACTOR, reason=reason):
            audit(session, ACTOR, "breaker", campaign_id, delivered=delivered,
                  hard_bounces=bounces, spam_reports=complaints,
                  bounce_limit=settings.breaker_bounce_rate,
                  complaint_limit=settings.breaker_complaint_rate)
            log.warning("campaign %s paused by the circuit breaker: %s", campaign_id, reason)
            paused.append(campaign_id)
    return paused
