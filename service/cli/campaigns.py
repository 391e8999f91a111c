"""`actionlist campaigns send|pause|resume|cancel ID` (and `recover`)."""

from __future__ import annotations

import click

from .. import db
from ..campaigns.drafts import IllegalTransition, NoLists, act
from ..campaigns.recovery import recover
from ..campaigns.sending import counts
from ..models import Campaign
from ..queue import task_queue

ACTOR = "cli"


@click.group("campaigns", help="Send, pause, resume or cancel a campaign.")
def campaigns() -> None:
    pass


def _run(campaign_id: int, action: str) -> None:
    session = db.session()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise click.ClickException(f"No campaign {campaign_id}.")
    try:
        act(session, campaign, action, ACTOR)
    except (IllegalTransition, NoLists) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    local = task_queue().local
    if local is not None and action in ("send", "resume"):
        # Embedded mode: the jobs run in this process, so wait for them.
        local.drain(timeout=24 * 3600)
        session.refresh(campaign)
    click.echo(f"Campaign {campaign_id}: {campaign.status.value} {counts(session, campaign_id)}")


@campaigns.command("send")
@click.argument("campaign_id", type=int)
def send_cmd(campaign_id: int) -> None:
    """Send a draft campaign now."""
    _run(campaign_id, "send")


@campaigns.command("pause")
@click.argument("campaign_id", type=int)
def pause_cmd(campaign_id: int) -> None:
    _run(campaign_id, "pause")


@campaigns.command("resume")
@click.argument("campaign_id", type=int)
def resume_cmd(campaign_id: int) -> None:
    _run(campaign_id, "resume")


@campaigns.command("cancel")
@click.argument("campaign_id", type=int)
def cancel_cmd(campaign_id: int) -> None:
    _run(campaign_id, "cancel")


@campaigns.command("recover")
def recover_cmd() -> None:
    """Run the crash-recovery pass once (requeue abandoned batches, start overdue ones)."""
    click.echo(recover())
