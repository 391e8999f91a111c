"""Campaign statistics from the aggregates the webhook job maintains."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import CampaignEventStat, CampaignEventUnique, CampaignLinkStat

# Figure name → the SendGrid events it adds up.
FIGURES: dict[str, tuple[str, ...]] = {
    "processed": ("processed",),
    "delivered": ("delivered",),
    "opens": ("open",),
    "clicks": ("click",),
    "bounces": ("bounce",),
    "dropped": ("dropped",),
    "deferred": ("deferred",),
    "blocked": ("blocked",),
    "spam_reports": ("spamreport",),
    "unsubscribes": ("unsubscribe", "group_unsubscribe"),
}
TOP_LINKS = 10


def _figures(counts: dict[str, int]) -> dict[str, int]:
    return {name: sum(counts.get(e, 0) for e in events) for name, events in FIGURES.items()}


def campaign_stats(session: Session, campaign_id: int) -> dict[str, Any]:
    """Totals, unique opens/clicks, hourly buckets (UTC, by event time) and top links."""
    totals: dict[str, int] = {}
    hourly: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(CampaignEventStat.hour, CampaignEventStat.event, CampaignEventStat.count)
        .where(CampaignEventStat.campaign_id == campaign_id)
        .order_by(CampaignEventStat.hour)
    )
    for hour, event, count in rows:
        totals[event] = totals.get(event, 0) + count
        bucket = hourly.setdefault(hour.isoformat(), {})
        bucket[event] = bucket.get(event, 0) + count
    uniques = dict(session.execute(
        select(CampaignEventUnique.event, func.count())
        .where(CampaignEventUnique.campaign_id == campaign_id)
        .group_by(CampaignEventUnique.event)
    ).all())
    links = session.execute(
        select(CampaignLinkStat.url, CampaignLinkStat.clicks)
        .where(CampaignLinkStat.campaign_id == campaign_id)
        .order_by(CampaignLinkStat.clicks.desc(), CampaignLinkStat.url)
        .limit(TOP_LINKS)
    )
    return {
        "campaign_id": campaign_id,
        **_figures(totals),
        "unique_opens": int(uniques.get("open", 0)),
        "unique_clicks": int(uniques.get("click", 0)),
        "hourly": [{"hour": hour, **_figures(counts)} for hour, counts in hourly.items()],
        "top_links": [{"url": url, "clicks": clicks} for url, clicks in links],
    }
