"""Campaign statistics from the aggregates the webhook job maintains."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import (
    UNIQUE_ACTION,
    CampaignBreakdown,
    CampaignEventStat,
    CampaignEventUnique,
    CampaignLinkStat,
)

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
    """Totals, unique opens/clicks, actions (distinct subscribers who clicked the action
    URL) and the action rate (of delivered), hourly buckets (UTC, by event time), top links,
    and the figures per subscriber locale and state (`by_locale`, `by_state`: counters the
    webhook job keeps, so this reads a few rows whatever the campaign's size)."""
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
    figures = _figures(totals)
    actions = int(uniques.get(UNIQUE_ACTION, 0))
    delivered = figures["delivered"]
    return {
        "campaign_id": campaign_id,
        **figures,
        "unique_opens": int(uniques.get("open", 0)),
        "unique_clicks": int(uniques.get("click", 0)),
        "actions": actions,
        "action_rate": round(actions / delivered, 6) if delivered else 0.0,
        **breakdowns(session, campaign_id),
        "hourly": [{"hour": hour, **_figures(counts)} for hour, counts in hourly.items()],
        "top_links": [{"url": url, "clicks": clicks} for url, clicks in links],
    }


BREAKDOWN_FIGURES = ("delivered", "unique_opens", "unique_clicks", "actions")


def breakdowns(session: Session, campaign_id: int) -> dict[str, dict[str, dict[str, int]]]:
    """{"by_locale": {locale: figures}, "by_state": {state: figures}}; "" is unknown."""
    out: dict[str, dict[str, dict[str, int]]] = {"by_locale": {}, "by_state": {}}
    table = CampaignBreakdown
    rows = session.execute(
        select(table.dimension, table.key, table.delivered, table.unique_opens,
               table.unique_clicks, table.actions)
        .where(table.campaign_id == campaign_id).order_by(table.dimension, table.key)
    )
    for dimension, key, *values in rows:
        out[f"by_{dimension}"][key] = {
            name: int(v) for name, v in zip(BREAKDOWN_FIGURES, values, strict=True)}
    return out
