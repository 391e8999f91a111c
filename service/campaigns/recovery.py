"""Crash recovery: finish what killed workers left, start what was due while none ran.

Design. The ledger is the database: `batches.status` (queued → sending → done) and
`deliveries.status` per recipient. A worker claims a batch with a conditional UPDATE and
keeps `batches.claimed_at` fresh (a heartbeat before every request to SendGrid), and it
marks deliveries sent right after each 202. A worker killed with SIGKILL therefore leaves
at most its one batch in `sending` with a heartbeat that stops ageing.

`recover()` — the recovery pass — does three things, each idempotent:

1. batches in `sending` whose heartbeat is older than `CAMPAIGN_LEASE_SECONDS` go back to
   `queued` (conditional UPDATE on the old `claimed_at`, so a live worker that just
   heart-beat keeps its batch) and get a new job; only their still-`queued` deliveries are
   sent again, so duplicates are bounded by the requests in flight at the kill;
2. campaigns in `sending` that look stalled (no batch claimed or finished within the lease)
   get a job for every `queued` batch — covers jobs lost with Redis or never enqueued
   because the process died between commit and enqueue. Duplicate jobs are harmless: the
   claim lets only one of them work;
3. `scheduled` campaigns whose `send_at` has passed get their start job (RQ's scheduler
   fires it normally; this covers time that passed while no worker ran).

It runs at every worker start (worker.py) and then every lease period from the
`watchdog` job, which re-enqueues itself while any campaign is scheduled or sending
(one chain per Redis, deduplicated with a SET NX key).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from .. import config, db
from ..db import utcnow
from ..models import Batch, BatchStatus, Campaign, CampaignStatus
from ..queue import enqueue_after_commit, task_queue
from .sending import START_JOB, enqueue_queued_batches, finish_if_done, queue_for

log = logging.getLogger(__name__)

# Runs `recover()`, then schedules itself again (enqueued by name).
WATCHDOG_JOB = "service.jobs.campaigns.watchdog"


def recover() -> dict[str, int]:
    session = db.session()
    lease = timedelta(seconds=config.settings().campaign_lease_seconds)
    now = utcnow()
    report = {"requeued_batches": 0, "restarted_campaigns": 0, "started_campaigns": 0}
    stale = session.execute(
        select(Batch.id, Batch.claimed_at, Batch.campaign_id).where(
            Batch.status == BatchStatus.sending,
            or_(Batch.claimed_at.is_(None), Batch.claimed_at < now - lease),
        )
    ).all()
    for batch_id, claimed_at, _campaign_id in stale:
        claim_matches = (Batch.claimed_at.is_(None) if claimed_at is None
                         else Batch.claimed_at == claimed_at)
        result = session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.status == BatchStatus.sending,
                                claim_matches)
            .values(status=BatchStatus.queued, error="requeued: worker lost")
            .execution_options(synchronize_session=False)
        )
        report["requeued_batches"] += int(result.rowcount)  # type: ignore[attr-defined]
    session.commit()

    for campaign in session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.sending)
    ):
        last = session.scalar(
            select(func.max(func.coalesce(Batch.finished_at, Batch.claimed_at)))
            .where(Batch.campaign_id == campaign.id)
        )
        recently_active = last is not None and last > now - lease
        started_recently = campaign.started_at is not None and campaign.started_at > now - lease
        if recently_active or (started_recently and not stale):
            continue
        if enqueue_queued_batches(session, campaign, tag="recover"):
            report["restarted_campaigns"] += 1
        session.commit()
        finish_if_done(session, campaign.id)

    for campaign in session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.scheduled,
                               Campaign.send_at <= now)
    ):
        enqueue_after_commit(session, START_JOB, campaign.id,
                             queue=queue_for(campaign.kind),
                             job_id=f"al-campaign-{campaign.id}-start-r{int(time.time())}")
        report["started_campaigns"] += 1
    session.commit()
    if any(report.values()):
        log.warning("campaign recovery: %s", report)
    return report


def schedule_watchdog() -> None:
    session = db.session()
    active = session.scalar(
        select(func.count()).select_from(Campaign)
        .where(Campaign.status.in_([CampaignStatus.scheduled, CampaignStatus.sending]))
    )
    session.commit()  # end the read transaction whatever follows
    if not active:
        return
    period = config.settings().campaign_lease_seconds
    tq = task_queue()
    if tq.redis is not None and not tq.redis.set(
        f"{tq.prefix}al:campaign-watchdog", "1", nx=True, ex=max(1, int(period * 0.9))
    ):
        return  # another chain runs
    enqueue_after_commit(session, WATCHDOG_JOB, queue="default",
                         job_id=f"al-watchdog-{int(time.time() * 1000)}",
                         at=utcnow() + timedelta(seconds=period))
    session.commit()
