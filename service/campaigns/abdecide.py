"""Deciding an A/B subject test: the winner goes to the rest of the audience.

The decision is one transaction, guarded by a conditional UPDATE of the campaign row:

    UPDATE campaigns SET ab_status = 'decided', ab_winner = :w
     WHERE id = :id AND ab_status = 'testing' AND status IN (…)
    UPDATE batches SET status = 'queued' WHERE campaign_id = :id AND status = 'held'

Two deciders (two workers' watch passes, the scheduled job, a staff member) race on the
first statement: the row lock makes the second wait and then find `ab_status` changed, so
it decides nothing. A decider killed before its commit leaves the test running and the
rest held: the next watch pass decides. After the commit the released batches get their
jobs; if those are lost, the watch pass's lost-job check gives them new ones. The held
batches' recipients were never in the sample's batches, so nobody gets two subjects.

The automatic decision is due at `ab_decide_at` (`wait_minutes` after the start) and is
made only while the campaign sends: paused, it waits for the resume (a staff member can
still decide); cancelled, it is never made.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Batch, BatchStatus, Campaign, CampaignStatus
from .abtest import DECIDED, TESTING, leader, subject_label, variant_figures
from .lifecycle import audit
from .sending import SYSTEM, enqueue_queued_batches

log = logging.getLogger(__name__)


class AbRefused(ValueError):
    """The campaign's test cannot be decided now (HTTP 409): none, over, or not running."""


class BadWinner(ValueError):
    """No such subject in the test (HTTP 422 on `winner`)."""


def _decide(session: Session, campaign: Campaign, winner: int, actor: str, *,
            allowed: list[CampaignStatus], due_only: bool) -> bool:
    """The guarded decision (see the module's docstring); False if another decided first
    or the campaign left the allowed states. The caller commits."""
    conditions = [Campaign.id == campaign.id, Campaign.ab_status == TESTING,
                  Campaign.status.in_(allowed)]
    if due_only:
        conditions.append(Campaign.ab_decide_at <= utcnow())
    won = session.execute(
        update(Campaign).where(*conditions)
        .values(ab_status=DECIDED, ab_winner=winner)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        return False
    released = session.execute(
        update(Batch).where(Batch.campaign_id == campaign.id, Batch.status == BatchStatus.held)
        .values(status=BatchStatus.queued)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(campaign)
    audit(session, actor, "ab_decide", campaign.id, winner=winner,
          subject=subject_label(campaign.ab_test or {}, winner)[:300], released=released)
    if campaign.status == CampaignStatus.sending:
        enqueue_queued_batches(session, campaign, tag="ab")
    return True


def decide(session: Session, campaign: Campaign, winner: int, actor: str) -> None:
    """A staff member picks the winner now (while the campaign sends or is paused).

    Raises AbRefused (no test, already decided, not running) or BadWinner. The caller
    commits; on a refusal it rolls back.
    """
    ab = campaign.ab_test
    if not ab:
        raise AbRefused("This campaign has no A/B test.")
    if not 0 <= winner < len(ab["subjects"]):
        raise BadWinner(f"Choose a subject between 0 and {len(ab['subjects']) - 1}.")
    if campaign.ab_status == DECIDED:
        raise AbRefused("The A/B test is already decided.")
    if not _decide(session, campaign, winner, actor,
                   allowed=[CampaignStatus.sending, CampaignStatus.paused], due_only=False):
        session.refresh(campaign)
        if campaign.ab_status == DECIDED:
            raise AbRefused("The A/B test is already decided.")
        raise AbRefused(f"The A/B test is not running (the campaign is "
                        f"{campaign.status.value}).")


def decide_if_due(session: Session, campaign_id: int) -> bool:
    """The automatic decision: the subject leading on the test's metric (ties: the first)
    wins, if the test is due and the campaign sends. Commits; True if it decided."""
    campaign = session.get(Campaign, campaign_id)
    if (campaign is None or campaign.ab_status != TESTING or not campaign.ab_test
            or campaign.status != CampaignStatus.sending
            or campaign.ab_decide_at is None or campaign.ab_decide_at > utcnow()):
        session.commit()
        return False
    winner = leader(variant_figures(session, campaign), campaign.ab_test["metric"])
    decided = _decide(session, campaign, winner, SYSTEM, allowed=[CampaignStatus.sending],
                      due_only=True)
    session.commit()
    if decided:
        log.info("campaign %s: A/B test decided, subject %d wins", campaign_id, winner)
    return decided


def decide_due(session: Session) -> int:
    """Decide every test that is due (the watch pass: robust if the scheduled job is lost)."""
    due = session.scalars(
        select(Campaign.id).where(Campaign.ab_status == TESTING,
                                  Campaign.status == CampaignStatus.sending,
                                  Campaign.ab_decide_at <= utcnow())
    ).all()
    session.commit()
    return sum(decide_if_due(session, campaign_id) for campaign_id in due)
