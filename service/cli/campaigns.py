"""`actionlist campaigns send|pause|resume|cancel ID` (and `recover`, `decide`)."""

from __future__ import annotations

from collections.abc import Callable

import click
from sqlalchemy.orm import Session

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


def _change(campaign_id: int, change: Callable[[Session, Campaign], None],
            refusals: tuple[type[Exception], ...], sends: bool) -> Campaign:
    """Apply `change` to the campaign and commit (a refusal is a ClickException); in
    embedded mode wait for the jobs it queued when it `sends`."""
    session = db.session()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise click.ClickException(f"No campaign {campaign_id}.")
    try:
        change(session, campaign)
    except refusals as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    local = task_queue().local
    if local is not None and sends:
        # Embedded mode: the jobs run in this process, so wait for them.
        local.drain(timeout=24 * 3600)
        session.refresh(campaign)
    return campaign


def _run(campaign_id: int, action: str) -> None:
    campaign = _change(campaign_id, lambda session, c: act(session, c, action, ACTOR),
                       (IllegalTransition, NoLists), sends=action in ("send", "resume"))
    click.echo(f"Campaign {campaign_id}: {campaign.status.value} "
               f"{counts(db.session(), campaign_id)}")


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
    campaign = _change(campaign_id, lambda session, c: decide(session, c, winner, ACTOR),
                       (AbRefused, BadWinner), sends=True)
    click.echo(f"Campaign {campaign_id}: subject {winner} won; {campaign.status.value} "
               f"{counts(db.session(), campaign_id)}")
