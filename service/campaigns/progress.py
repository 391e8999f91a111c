"""How far a campaign has got: sent / total, the current rate and an estimate of the rest.

The rate is measured over the last `RATE_WINDOW` of `deliveries.sent_at` (so a pause or a
slow start does not drag it down for ever); when nothing went out in that window while
the campaign is sending, the average since it started is used instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from .sending import counts

RATE_WINDOW = timedelta(seconds=30)


@dataclass(frozen=True)
class Progress:
    status: str
    status_reason: str
    total: int
    sent: int
    failed: int
    skipped: int
    queued: int
    done: int
    percent: float
    rate_per_minute: float
    eta_seconds: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def campaign_progress(session: Session, campaign: Campaign) -> Progress:
    c = counts(session, campaign.id)
    done = c["sent"] + c["failed"] + c["skipped"]
    now = utcnow()
    recent = int(session.scalar(
        select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign.id,
            Delivery.status == DeliveryStatus.sent,
            Delivery.sent_at >= now - RATE_WINDOW,
        )
    ) or 0)
    per_second = recent / RATE_WINDOW.total_seconds()
    if not per_second and campaign.status == CampaignStatus.sending and campaign.started_at:
        elapsed = (now - campaign.started_at).total_seconds()
        per_second = c["sent"] / elapsed if elapsed > 0 else 0.0
    sending = campaign.status == CampaignStatus.sending
    eta = round(c["queued"] / per_second) if sending and per_second > 0 else None
    if campaign.status == CampaignStatus.sent:
        eta = 0
    return Progress(
        status=campaign.status.value,
        status_reason=campaign.status_reason,
        total=c["total"], sent=c["sent"], failed=c["failed"], skipped=c["skipped"],
        queued=c["queued"], done=done,
        percent=round(100.0 * done / c["total"], 1) if c["total"] else 0.0,
        rate_per_minute=round(per_second * 60, 1),
        eta_seconds=eta,
    )


def counts_by_campaign(session: Session, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """`sending.counts` for many campaigns in one grouped query (the campaign list page)."""
    result = {cid: {"total": 0, "queued": 0, "sent": 0, "failed": 0, "skipped": 0}
              for cid in campaign_ids}
    if not campaign_ids:
        return result
    rows = session.execute(
        select(Delivery.campaign_id, Delivery.status, func.count())
        .where(Delivery.campaign_id.in_(campaign_ids))
        .group_by(Delivery.campaign_id, Delivery.status)
    )
    for cid, status, n in rows:
        result[cid][str(status)] = int(n)
        result[cid]["total"] += int(n)
    return result
