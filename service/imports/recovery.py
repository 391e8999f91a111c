"""Recovery of imports whose job died with its worker (the API / RQ path).

The job heart-beats once per chunk (`imports.heartbeat_at`, committed with the chunk).
A worker killed with SIGKILL leaves its import `running` with a heartbeat that stops
ageing, and its RQ job in the StartedJobRegistry, where RQ would notice it only after
the job timeout (6 h). `recover_imports()`, run by every worker at start and then every
maintenance period (worker.py), does two things, each idempotent:

1. `running` imports whose heartbeat is older than `IMPORT_LEASE_SECONDS` go back to
   `queued` and get a new job, which resumes after `processed_rows`;
2. `queued` imports last (re)queued more than a lease ago whose job is no longer waiting
   in Redis (lost with Redis, or never enqueued because a process died between commit
   and enqueue) get a new job.

Each takes the import with a conditional UPDATE on the heartbeat it read (and sets it to
now, "requeued at"), so of two workers' passes only one enqueues, and a queued import is
re-enqueued at most once per lease. Rows another transaction holds (a chunk committing)
are skipped (`SKIP LOCKED` on PostgreSQL): the pass runs inside a worker's loop and must
never wait; the next pass looks again. A duplicate job would be harmless anyway: `_claim`
lets one attempt work, and the attempt number fences its chunks (`runs.LeaseLost`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from .. import db
from ..db import is_pg, utcnow
from ..models import Import, ImportStatus
from ..queue import task_queue
from .runs import lease
from .uploads import job_id, queue_run

log = logging.getLogger(__name__)

WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def recover_imports() -> dict[str, int]:
    session = db.session()
    if is_pg(session):  # fail this pass rather than wait
        session.execute(text("SET LOCAL lock_timeout = '5s'"))
    now = utcnow()
    cutoff = now - lease()
    report = {"requeued_imports": 0, "reenqueued_imports": 0}
    abandoned = session.execute(
        select(Import.id, Import.heartbeat_at, Import.attempts).where(
            Import.status == ImportStatus.running,
            or_(Import.heartbeat_at.is_(None), Import.heartbeat_at < cutoff),
        ).order_by(Import.id).with_for_update(skip_locked=True)
    ).all()
    for import_id, beat, attempts in abandoned:
        if _take(session, import_id, ImportStatus.running, beat, now):
            queue_run(session, import_id, attempts)
            report["requeued_imports"] += 1
    waiting = session.execute(
        select(Import.id, Import.heartbeat_at, Import.attempts).where(
            Import.status == ImportStatus.queued,
            func.coalesce(Import.heartbeat_at, Import.created_at) < cutoff,
        ).order_by(Import.id).with_for_update(skip_locked=True)
    ).all()
    for import_id, beat, attempts in waiting:
        if _job_waiting(import_id, attempts):
            continue  # behind other jobs in the queue: it will run
        if _take(session, import_id, ImportStatus.queued, beat, now):
            queue_run(session, import_id, attempts)
            report["reenqueued_imports"] += 1
    session.commit()  # the jobs go to the queue now
    if any(report.values()):
        log.warning("import recovery: %s", report)
    return report


def _take(session: Session, import_id: int, status: ImportStatus, beat: datetime | None,
          now: datetime) -> bool:
    """Conditional UPDATE on the heartbeat read: a live worker that just beat keeps its
    import, and a concurrent pass that took it first wins."""
    same_beat = Import.heartbeat_at.is_(None) if beat is None else Import.heartbeat_at == beat
    values: dict[str, object] = {"status": ImportStatus.queued, "heartbeat_at": now}
    if status == ImportStatus.running:
        values["error"] = "requeued: worker lost"  # shown until the next attempt claims it
    result = session.execute(
        update(Import)
        .where(Import.id == import_id, Import.status == status, same_beat)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _job_waiting(import_id: int, attempts: int) -> bool:
    """Whether a job of the import still waits in the queue (not run, not lost).

    A `started` job does not count: a started job claims its import at once, so one that
    is started while the import is queued died with its worker.
    """
    tq = task_queue()
    if tq.redis is None:  # in-process: any pending job may be this one
        return tq.local is not None and tq.local.pending() > 0
    for name in (job_id(import_id), job_id(import_id, attempts)):
        try:
            status = Job.fetch(name, connection=tq.redis).get_status(refresh=False)
        except NoSuchJobError:
            continue
        if status in WAITING:
            return True
    return False
