"""`actionlist campaigns send|pause|resume|cancel ID` (and `recover`, `decide`)."""

from __future__ import annotations

import click

from .. import db
from ..campaigns.abdecide import AbRefused, BadWinner, decide
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


def _action_command(action: str, help: str | None = None) -> click.Command:
    """`actionlist campaigns <action> ID`."""

    @campaigns.command(action, help=help)
    @click.argument("campaign_id", type=int)
    def command(campaign_id: int) -> None:
        _run(campaign_id, action)

    return command


send_cmd = _action_command("send", "Send a draft campaign now.")
pause_cmd = _action_command("pause")
resume_cmd = _action_command("resume")
cancel_cmd = _action_command("cancel")


@campaigns.command("recover")
def recover_cmd() -> None:
    """Run the crash-recovery pass once (requeue abandoned batches, start overdue ones)."""
    click.echo(recover())


@campaigns.command("decide")
@click.argument("campaign_id", type=int)
@click.argument("winner", type=int)
def decide_cmd(campaign_id: int, winner: int) -> None:
    """End a campaign's A/B subject test now: subject WINNER (0, 1, …) goes to the rest."""
    session = db.session()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise click.ClickException(f"No campaign {campaign_id}.")
    try:
        decide(session, campaign, winner, ACTOR)
    except (AbRefused, BadWinner) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    local = task_queue().local
    if local is not None:  # embedded mode: the rest is sent by this process
        local.drain(timeout=24 * 3600)
        session.refresh(campaign)
    click.echo(f"Campaign {campaign_id}: subject {winner} won; {campaign.status.value} "
               f"{counts(session, campaign_id)}")
