"""Jobs of campaigns: start (freeze the audience), send a batch, send a test, watchdog."""

from __future__ import annotations

from .. import db
from ..campaigns import abdecide, recovery, sending


def start(campaign_id: int) -> None:
    """scheduled → sending: freeze the audience and queue its batches (idempotent)."""
    sending.start_campaign(db.session(), campaign_id)


def send_batch(batch_id: int) -> None:
    """Send one batch; a second run of the same job finds it claimed and does nothing."""
    sending.send_batch(db.session(), batch_id)


def send_test(campaign_id: int, emails: list[str], actor: str) -> None:
    """The campaign as its recipients would get it, to staff addresses."""
    sending.send_test(db.session(), campaign_id, emails, actor)


def watchdog() -> None:
    """Run the recovery pass, then again one lease later while campaigns are in flight."""
    recovery.recover()
    recovery.schedule_watchdog()


def decide_ab(campaign_id: int) -> None:
    """Decide a campaign's A/B test once due (a no-op if decided or not yet due)."""
    abdecide.decide_if_due(db.session(), campaign_id)
