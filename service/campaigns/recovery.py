"""Crash recovery: finish what killed workers left, start what was due while none ran.

Design. The ledger is the database: `batches.status` (queued → sending → done) and
`deliveries.status` per recipient. A worker holds the batch's advisory lock (PostgreSQL,
`liveness`) from before its claim until it is done, claims the batch with a conditional
UPDATE, keeps `batches.claimed_at` fresh (a heartbeat before every request to SendGrid),
and marks deliveries sent right after each 202. A worker killed with SIGKILL therefore
leaves at most its one batch in `sending`, with its lock released by the server at once
and a heartbeat that stops ageing.

`watch()` — run by every worker every `WATCH_SECONDS`, between jobs and while idle —
does the two cheap, urgent things:

1. batches in `sending` that nobody holds go back to `queued` and get a job at the
   front of their queue. On PostgreSQL "nobody holds" is exact: the pass can take the
   batch's advisory lock. On SQLite (the embedded mode: no advisory locks) it is "the
   heartbeat is older than `CAMPAIGN_LEASE_SECONDS`" (a conditional UPDATE on the old
   `claimed_at`, so a live worker that just heart-beat keeps its batch). Only their
   still-`queued` deliveries are sent again, so duplicates are bounded by the requests
   in flight at the kill;
2. `queued` batches of sending campaigns that have no job waiting in Redis on two passes
   in a row get one at the front: a worker killed after taking a job and before claiming
   its batch, or Redis restarted empty, loses jobs but never the ledger. A local-hour
   batch whose `not_before` is still ahead is left alone until it is due (its scheduled
   job normally enqueues it then; if that job was lost, this pass does, within seconds);
3. A/B subject tests that are due are decided (`abdecide`): should the scheduled decision
   job be lost, the test still ends within a pass of its time.

`recover()` — the full pass — does these three, and:

4. campaigns in `sending` that look stalled (no batch claimed or finished within the
   lease) get a job for every `queued` batch — the fallback where Redis cannot be
   inspected (the in-process queue of the embedded mode). Duplicate jobs are harmless:
   the lock and the claim let only one of them work;
5. `scheduled` campaigns whose `send_at` has passed get their start job (RQ's scheduler
   fires it normally; this covers time that passed while no worker ran).

It runs at every worker start (worker.py), then every lease period in each worker and
from the `watchdog` job, which re-enqueues itself while any campaign is scheduled or
sending (one chain per Redis, deduplicated with a SET NX key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from .. import config, db
from ..db import utcnow
from ..models import Batch, BatchStatus, Campaign, CampaignKind, CampaignStatus
from ..queue import enqueue_after_commit, task_queue
from .abdecide import decide_due
from .liveness import probe_abandoned, uses_locks
from .sending import (
    START_JOB,
    batch_of_job,
    due,
    enqueue_batches,
    enqueue_queued_batches,
    finish_if_done,
    queue_for,
)

log = logging.getLogger(__name__)

# Runs `recover()`, then schedules itself again (enqueued by name).
WATCHDOG_JOB = "service.jobs.campaigns.watchdog"
# How often each worker runs `watch()`: a dead worker's batch goes on within about this
# long (plus one batch's time if every worker is busy), not a lease later.
WATCH_SECONDS = 2.0
# A queued batch found without a waiting job is lost only if it still has none this
# much later: a live worker takes a job from the queue a moment before it claims.
LOST_JOB_SECONDS = 1.0
REQUEUED = "requeued: worker lost"


def watch() -> dict[str, int]:
    """The cheap part of the recovery pass, run every few seconds by every worker."""
    session = db.session()
    report = {"requeued_batches": requeue_abandoned(session),
              "lost_jobs": enqueue_lost_jobs(session),
              "ab_decided": decide_due(session)}
    if any(report.values()):
        log.warning("campaign watch: %s", report)
    return report


def requeue_abandoned(session: Session) -> int:
    """Batches in `sending` that no live worker holds go back to `queued` and get a job at
    the front of their queue (see the module's docstring)."""
    if uses_locks(session):
        with probe_abandoned(session) as abandoned:
            return _requeue(session, abandoned)
    lease = timedelta(seconds=config.settings().campaign_lease_seconds)
    stale = session.execute(
        select(Batch.id, Batch.claimed_at).where(
            Batch.status == BatchStatus.sending,
            or_(Batch.claimed_at.is_(None), Batch.claimed_at < utcnow() - lease),
        )
    ).all()
    requeued = 0
    for batch_id, claimed_at in stale:
        # Only if the heartbeat has not moved since: a live worker keeps its batch.
        claim_matches = (Batch.claimed_at.is_(None) if claimed_at is None
                         else Batch.claimed_at == claimed_at)
        requeued += _requeue(session, [batch_id], claim_matches)
    session.commit()
    return requeued


def _requeue(session: Session, batch_ids: Sequence[int], *conditions: object) -> int:
    if not batch_ids:
        return 0
    rows = session.execute(
        update(Batch).where(Batch.id.in_(batch_ids), Batch.status == BatchStatus.sending,
                            *conditions)  # type: ignore[arg-type]
        .values(status=BatchStatus.queued, error=REQUEUED)
        .returning(Batch.id, Batch.campaign_id)
        .execution_options(synchronize_session=False)
    ).all()
    kinds = _kinds(session, {campaign_id for _, campaign_id in rows})
    for batch_id, campaign_id in rows:
        enqueue_batches(session, kinds[campaign_id], [batch_id], tag="recover", at_front=True)
    session.commit()
    return len(rows)


def _kinds(session: Session, campaign_ids: set[int]) -> dict[int, CampaignKind]:
    if not campaign_ids:
        return {}
    return dict(session.execute(
        select(Campaign.id, Campaign.kind).where(Campaign.id.in_(campaign_ids))).all())


def enqueue_lost_jobs(session: Session) -> int:
    """A job at the front of the queue for each `queued` batch of a sending campaign that
    has had no job waiting in Redis (queued or scheduled) for `LOST_JOB_SECONDS`."""
    tq = task_queue()
    rows = session.execute(
        select(Batch.id, Campaign.kind).join(Campaign, Campaign.id == Batch.campaign_id)
        .where(Campaign.status == CampaignStatus.sending, Batch.status == BatchStatus.queued,
               due(utcnow()))
    ).all()
    session.commit()  # end the read transaction before asking Redis
    suspects: dict[int, float] = current_app.extensions.setdefault("campaign_lost_jobs", {})
    if not rows or tq.redis is None:
        suspects.clear()
        return 0
    by_kind: dict[CampaignKind, list[int]] = {}
    for batch_id, kind in rows:
        by_kind.setdefault(kind, []).append(batch_id)
    now = time.monotonic()
    missing: dict[int, CampaignKind] = {}
    for kind, batch_ids in by_kind.items():
        waiting = {batch_of_job(job_id) for job_id in tq.waiting_job_ids(queue_for(kind)) or ()}
        missing.update((batch_id, kind) for batch_id in batch_ids if batch_id not in waiting)
    seen_before = {batch_id: suspects.get(batch_id, now) for batch_id in missing}
    lost = [batch_id for batch_id, since in seen_before.items()
            if now - since >= LOST_JOB_SECONDS]
    suspects.clear()
    suspects.update((b, since) for b, since in seen_before.items() if b not in lost)
    for batch_id in lost:
        enqueue_batches(session, missing[batch_id], [batch_id], tag="lost", at_front=True)
    session.commit()
    return len(lost)


def recover() -> dict[str, int]:
    session = db.session()
    lease = timedelta(seconds=config.settings().campaign_lease_seconds)
    now = utcnow()
    report = {"requeued_batches": requeue_abandoned(session),
              "lost_jobs": enqueue_lost_jobs(session),
              "ab_decided": decide_due(session),
              "restarted_campaigns": 0, "started_campaigns": 0}
    stale = report["requeued_batches"]

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
        # (only batches already due: a local-hour zone still to come has its scheduled job,
        # and gets one from `enqueue_lost_jobs` when due if that job was lost)
        if enqueue_queued_batches(session, campaign, tag="recover", due_only=True):
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
