"""Delivering the outbox: one attempt per job, exponential backoff, the sweep, disabling.

A delivery job (`service.jobs.outgoing.deliver(delivery_id, attempts)`) claims its outbox
row with a conditional UPDATE — still pending, still at the attempt count the job was
queued for, not leased to another job, endpoint enabled — and takes a lease; commits; posts
outside any transaction; then records the attempt. A failure schedules the next attempt
`base × 2^(n-1)` seconds later (`WEBHOOKS_RETRY_BASE_SECONDS`, at most 6 h apart). An
endpoint with no delivered event for `WEBHOOKS_DISABLE_AFTER_SECONDS` (24 h) of failures is
disabled, with an audit record; its rows stay pending and are sent when it is enabled again.

Duplicate jobs are harmless (the claim lets one through); a lost job is found by the
sweep, which every worker runs every few seconds: a due row with no lease whose job is not
waiting in Redis gets a job again. The event's `id` never changes, so a receiver can
deduplicate the rare second delivery (a worker killed after the POST, before recording it).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from .. import config
from ..audit import record
from ..db import delete_in_chunks, utcnow
from ..models import OutgoingAttempt, OutgoingDelivery, OutgoingEndpoint, OutgoingEvent
from ..outbound import DELIVER_JOB, DELIVERY_QUEUE, delivery_job_id, iso
from ..queue import enqueue_after_commit, task_queue
from .keys import secret_of
from .sender import SIGNATURE_HEADER, Outcome, post, signature

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 6 * 3600
# A claimed row whose job died is claimable again after this lease.
LEASE_SECONDS = 120
# The sweep gives a job to a due row only once it has been due this long: a live worker
# takes a job from the queue a moment before it claims the row.
LOST_JOB_SECONDS = 5.0
# Where Redis cannot be inspected (the embedded mode), the sweep waits this long instead.
EMBEDDED_LOST_JOB_SECONDS = 60.0
SWEEP_LIMIT = 500
USER_AGENT = "actionlist-webhooks/1"
# Events every endpoint has taken are kept this long (the delivery log staff read), then
# pruned with their deliveries and attempts; an event still pending anywhere stays.
KEEP_DELIVERED = timedelta(days=30)
PRUNE_CHUNK = 5_000


def backoff(attempts: int, base: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    base = config.settings().webhooks_retry_base_seconds if base is None else base
    return float(min(base * 2 ** max(attempts - 1, 0), MAX_DELAY_SECONDS))


def body_of(event: OutgoingEvent) -> bytes:
    payload = {"id": event.public_id, "type": event.type, "created_at": iso(event.created_at),
               "data": event.data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _claim(session: Session, delivery_id: int, attempts: int) -> tuple[int, int] | None:
    now = utcnow()
    enabled = exists().where(OutgoingEndpoint.id == OutgoingDelivery.endpoint_id,
                             OutgoingEndpoint.enabled.is_(True))
    row = session.execute(
        update(OutgoingDelivery)
        .where(OutgoingDelivery.id == delivery_id, OutgoingDelivery.status == "pending",
               OutgoingDelivery.attempts == attempts,
               or_(OutgoingDelivery.claimed_until.is_(None),
                   OutgoingDelivery.claimed_until < now),
               enabled)
        .values(attempts=OutgoingDelivery.attempts + 1,
                claimed_until=now + timedelta(seconds=LEASE_SECONDS))
        .returning(OutgoingDelivery.attempts, OutgoingDelivery.endpoint_id)
        .execution_options(synchronize_session=False)
    ).first()
    session.commit()
    return (int(row[0]), int(row[1])) if row is not None else None


def deliver(session: Session, delivery_id: int, attempts: int) -> str:
    """One attempt of one outbox row (the job). Returns what happened, for the logs."""
    claimed = _claim(session, delivery_id, attempts)
    if claimed is None:
        return "skipped"
    attempt, endpoint_id = claimed
    endpoint = session.get(OutgoingEndpoint, endpoint_id)
    delivery = session.get(OutgoingDelivery, delivery_id)
    if endpoint is None or delivery is None:
        session.rollback()
        return "gone"
    settings = config.settings()
    body = body_of(delivery.event)
    event_id = delivery.event.public_id
    url = endpoint.url
    try:
        secret = secret_of(endpoint)
    except ValueError as exc:
        session.rollback()
        return _record(session, delivery_id, endpoint_id, attempt, Outcome(None, str(exc), 0))
    session.rollback()  # no transaction stays open while the receiver answers
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Actionlist-Event-Id": event_id,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    outcome = post(url, body, headers, timeout=settings.webhooks_timeout,
                   allow_private=settings.webhooks_allow_private)
    return _record(session, delivery_id, endpoint_id, attempt, outcome)


def _record(session: Session, delivery_id: int, endpoint_id: int, attempt: int,
            outcome: Outcome) -> str:
    now = utcnow()
    session.add(OutgoingAttempt(delivery_id=delivery_id, endpoint_id=endpoint_id,
                                number=attempt, at=now, status_code=outcome.status_code,
                                error=outcome.error, duration_ms=outcome.duration_ms))
    # The endpoint row's lock orders concurrent attempts' changes to its failure clock.
    endpoint = session.get(OutgoingEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None:
        session.rollback()
        return "gone"
    if outcome.ok:
        session.execute(
            update(OutgoingDelivery).where(OutgoingDelivery.id == delivery_id)
            .values(status="delivered", delivered_at=now, claimed_until=None)
            .execution_options(synchronize_session=False))
        endpoint.failing_since = None
        session.commit()
        return "delivered"
    window = timedelta(seconds=config.settings().webhooks_disable_after_seconds)
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    next_at = now + timedelta(seconds=backoff(attempt))
    if now < endpoint.failing_since + window < next_at:
        next_at = endpoint.failing_since + window  # the attempt that decides comes on time
    session.execute(
        update(OutgoingDelivery).where(OutgoingDelivery.id == delivery_id)
        .values(next_attempt_at=next_at, claimed_until=None)
        .execution_options(synchronize_session=False))
    if endpoint.enabled and now - endpoint.failing_since >= window:
        _disable(session, endpoint, outcome)
    if endpoint.enabled:
        enqueue_after_commit(session, DELIVER_JOB, delivery_id, attempt, queue=DELIVERY_QUEUE,
                             at=next_at, job_id=delivery_job_id(delivery_id, attempt),
                             timeout=120)
    session.commit()
    return "failed"


def _disable(session: Session, endpoint: OutgoingEndpoint, outcome: Outcome) -> None:
    assert endpoint.failing_since is not None
    endpoint.enabled = False
    endpoint.disabled_at = utcnow()
    endpoint.disabled_reason = (
        f"Every delivery failed since {iso(endpoint.failing_since)}; last error: "
        f"{outcome.error or outcome.status_code}"
    )[:1000]
    record(session, actor="system", action="webhook.disable", object_type="webhook",
           object_id=endpoint.id,
           detail={"failing_since": iso(endpoint.failing_since), "last_error": outcome.error})
    log.warning("outgoing webhook endpoint %s disabled: %s", endpoint.id,
                endpoint.disabled_reason)


def enqueue_due(session: Session, *, endpoint_id: int | None = None,
                grace: float | None = None) -> int:
    """Give a job to every due, unclaimed, pending row of an enabled endpoint whose job is
    not waiting (at most SWEEP_LIMIT a pass). The caller commits (the jobs go then).

    With `endpoint_id` (an endpoint enabled again) every due row gets a job now, waiting
    or not: a retry scheduled hours ahead must not hold it back (the claim lets only one
    of two jobs through)."""
    now = utcnow()
    waiting: set[str] | None = None
    if endpoint_id is None:
        waiting = task_queue().waiting_job_ids(DELIVERY_QUEUE)
    else:
        grace = 0.0
    if grace is None:
        grace = LOST_JOB_SECONDS if waiting is not None else EMBEDDED_LOST_JOB_SECONDS
    query = (
        select(OutgoingDelivery.id, OutgoingDelivery.attempts)
        .join(OutgoingEndpoint, OutgoingEndpoint.id == OutgoingDelivery.endpoint_id)
        .where(OutgoingDelivery.status == "pending", OutgoingEndpoint.enabled.is_(True),
               OutgoingDelivery.next_attempt_at <= now - timedelta(seconds=grace),
               or_(OutgoingDelivery.claimed_until.is_(None),
                   OutgoingDelivery.claimed_until < now))
        .order_by(OutgoingDelivery.next_attempt_at).limit(SWEEP_LIMIT)
    )
    if endpoint_id is not None:
        query = query.where(OutgoingDelivery.endpoint_id == endpoint_id)
    queued = 0
    for delivery_id, attempts in session.execute(query).all():
        job_id = delivery_job_id(delivery_id, attempts)
        if waiting is not None and job_id in waiting:
            continue
        enqueue_after_commit(session, DELIVER_JOB, delivery_id, attempts,
                             queue=DELIVERY_QUEUE, job_id=job_id, timeout=120)
        queued += 1
    return queued


def sweep(session: Session, *, at_start: bool = False) -> dict[str, Any]:
    """The periodic pass (every worker's watch, and at start): jobs for lost rows.

    `at_start`: a process that has just started holds no in-process job, so every due
    row is lost at once (the embedded mode's restart)."""
    queued = enqueue_due(session, grace=0.0 if at_start else None)
    session.commit()
    if queued:
        log.warning("outgoing webhooks: %d deliveries had lost their job", queued)
    return {"requeued": queued}


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete the events created more than KEEP_DELIVERED ago that no endpoint still waits
    for, with their deliveries and attempts (foreign keys cascade), PRUNE_CHUNK per commit
    (a worker's recovery pass calls it; the age is found through a BRIN index of
    `created_at`). How many events went.

    Without it the outbox grew by an event per subscriber change for ever, each holding
    the person's address in its data."""
    cutoff = (now or utcnow()) - KEEP_DELIVERED
    pending = exists().where(OutgoingDelivery.event_id == OutgoingEvent.id,
                             OutgoingDelivery.status != "delivered")
    return delete_in_chunks(session, OutgoingEvent.id, OutgoingEvent.created_at < cutoff,
                            ~pending, chunk=PRUNE_CHUNK)
