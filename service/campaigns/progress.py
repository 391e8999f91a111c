"""How far a campaign has got: sent / total, the current rate and an estimate of the rest.

The admin's progress bar polls this while a campaign sends (every second, every 3 s above
100,000 deliveries), so it has to stay cheap on a campaign of a million deliveries:

- the counts are `sending.counts`: a sum over the campaign's batches, which count their
  own deliveries (about a thousand rows for a million recipients);
- the rate sums the sent counts of the batches *finished* in the last `RATE_WINDOW` (a
  few batches, found on `ix_batches_campaign_status`), rather than scanning every
  delivery's `sent_at`.
  `bench/campaign_progress.py` compares the two.

When no batch finished in the window while the campaign sends (a slow start), the
average since it started is used instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Batch, BatchStatus, Campaign, CampaignStatus
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


def recent_sent_query(campaign_id: int, since: datetime) -> Select[Any]:
    """Deliveries sent by the campaign's batches that finished since `since`."""
    return (
        select(func.coalesce(func.sum(Batch.sent), 0))
        .where(Batch.campaign_id == campaign_id, Batch.status == BatchStatus.done,
               Batch.finished_at >= since)
    )


def campaign_progress(session: Session, campaign: Campaign) -> Progress:
    c = counts(session, campaign.id)
    done = c["sent"] + c["failed"] + c["skipped"]
    now = utcnow()
    recent = int(session.scalar(recent_sent_query(campaign.id, now - RATE_WINDOW)) or 0)
    per_second = recent / RATE_WINDOW.total_seconds()
    sending = campaign.status == CampaignStatus.sending
    if not per_second and sending and campaign.started_at:
        elapsed = (now - campaign.started_at).total_seconds()
        per_second = c["sent"] / elapsed if elapsed > 0 else 0.0
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
