"""Background work: RQ on Redis, or an in-process worker when no REDIS_URL is set.

Jobs are plain functions that take ids and reload state. Code never enqueues directly
from a request: it calls `enqueue_after_commit(...)`, and the job goes to the queue only
once the current database transaction has committed, so a job never finds its row
missing; a rollback drops it.

Queues, in the order a worker serves them: `transactional` (confirmations and other
mail a person is waiting for), `alerts`, `newsletters`, `default` (imports, housekeeping).
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job
from sqlalchemy import event
from sqlalchemy.orm import Session

from . import db
from .config import Settings

log = logging.getLogger(__name__)

QUEUE_ORDER = ("transactional", "alerts", "newsletters", "default")

# Transactional mail: retry transient failures with growing pauses (RQ needs the scheduler).
MAIL_RETRY = (5, 30, 120, 600, 1800)


@dataclass
class JobRequest:
    func: Callable[..., Any] | str
    args: tuple[Any, ...]
    queue: str = "transactional"
    job_id: str | None = None
    retry_intervals: tuple[int, ...] = ()
    at: datetime | None = None
    timeout: int = 600
    at_front: bool = False
    # A wake-up for the in-process worker only (`wake_after_commit`).
    embedded_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class TaskQueue:
    """Where jobs go: RQ when Redis is configured, otherwise an in-process thread."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.prefix = settings.queue_prefix
        self.redis: Redis | None = (
            Redis.from_url(settings.redis_url) if settings.redis_url else None
        )
        self.local: InProcessWorker | None = None if self.redis else InProcessWorker(app)

    @property
    def is_async_redis(self) -> bool:
        return self.redis is not None

    def name(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def rq_queue(self, queue: str) -> Queue:
        assert self.redis is not None
        return Queue(self.name(queue), connection=self.redis)

    def queues_in_order(self) -> list[Queue]:
        return [self.rq_queue(q) for q in QUEUE_ORDER]

    def submit_all(self, requests: list[JobRequest]) -> None:
        """Queue jobs; on Redis all of them in one MULTI/EXEC round trip.

        A signup's confirmation mail costs one round trip instead of two, and a
        campaign's start job queues its thousand batch jobs in one instead of two
        thousand.
        """
        if self.redis is None:
            for request in requests:
                self.submit(request)
            return
        requests = [r for r in requests if not r.embedded_only]
        if not requests:
            return
        with self.redis.pipeline() as pipe:
            # MULTI first: RQ's `enqueue` puts a pipeline in MULTI mode itself and refuses
            # one that already holds commands, which a job scheduled for later (queued
            # with `enqueue_at`) before it would have left there.
            pipe.multi()
            for request in requests:
                self.submit(request, pipeline=pipe)
            pipe.execute()

    def submit(self, request: JobRequest, pipeline: Any = None) -> None:
        if self.local is not None:
            self.local.submit(request)
            return
        q = self.rq_queue(request.queue)
        options: dict[str, Any] = {"job_timeout": request.timeout, "result_ttl": 3600,
                                   "pipeline": pipeline}
        if request.job_id:
            options["job_id"] = request.job_id
        if request.at_front and request.at is None:
            options["at_front"] = True
        if request.retry_intervals:
            options["retry"] = Retry(
                max=len(request.retry_intervals), interval=list(request.retry_intervals)
            )
        if request.at is not None:
            q.enqueue_at(request.at, request.func, *request.args, **options)
        else:
            q.enqueue(request.func, *request.args, **options)  # type: ignore[type-var]

    def waiting_job_ids(self, queue: str) -> set[str] | None:
        """The ids of the jobs waiting on `queue`: in its list or scheduled for later (not
        those a worker has taken). None in the in-process mode."""
        if self.redis is None:
            return None
        q = self.rq_queue(queue)
        return set(q.get_job_ids()) | set(q.scheduled_job_registry.get_job_ids())

    def depth(self) -> dict[str, int]:
        if self.local is not None:
            return {"in-process": self.local.pending()}
        return {q: self.rq_queue(q).count for q in QUEUE_ORDER}

    def ping(self) -> bool:
        if self.redis is None:
            return self.local is not None and self.local.alive()
        return bool(self.redis.ping())

    def make_worker(self, *, name: str | None = None,
                    maintenance: Callable[[], Any] | None = None,
                    every: int | None = None,
                    watch: Callable[[], Any] | None = None,
                    watch_every: float | None = None) -> AppWorker:
        """An RQ worker on every queue; with `every`, it runs its maintenance (RQ's, then
        `maintenance`) at least that often, also while idle; with `watch_every`, it runs
        `watch` (a cheap check) that often, between jobs and while idle."""
        assert self.redis is not None, "RQ workers need REDIS_URL"
        options: dict[str, Any] = {}
        if every is not None:
            # Idle workers wake when a dequeue times out (worker_ttl - 15 s).
            options = {"maintenance_interval": every, "worker_ttl": every + 15}
        return AppWorker(self.queues_in_order(), connection=self.redis, app=self.app, name=name,
                         maintenance=maintenance, watch=watch, watch_every=watch_every,
                         **options)


class AppWorker(SimpleWorker):
    """An RQ worker that runs each job inside a fresh app context.

    It does not fork per job: jobs are short and reuse the database pool. A job killed
    with its worker stays in the StartedJobRegistry until RQ marks it abandoned, so
    every job must be safe to run twice.
    """

    def __init__(self, *args: Any, app: Flask, maintenance: Callable[[], Any] | None = None,
                 watch: Callable[[], Any] | None = None, watch_every: float | None = None,
                 **kwargs: Any) -> None:
        self.watch = watch  # (before RQ's __init__, which reads dequeue_timeout)
        self.watch_every = watch_every
        self.watched_at = 0.0
        super().__init__(*args, **kwargs)
        self.flask_app = app
        self.maintenance = maintenance

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.flask_app.app_context():
            return bool(super().perform_job(job, queue))

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes at least every `watch_every` seconds to run `watch`."""
        timeout: int = super().dequeue_timeout
        if self.watch is not None and self.watch_every is not None:
            timeout = max(1, min(timeout, int(self.watch_every)))
        return timeout

    def _watch_due(self) -> bool:
        return (self.watch is not None and self.watch_every is not None
                and time.monotonic() - self.watched_at >= self.watch_every)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return self._watch_due() or bool(super().should_run_maintenance_tasks)

    def run_maintenance_tasks(self) -> None:
        """`watch` when due; then, when due, our maintenance and RQ's (`maintain`)."""
        if self._watch_due():
            assert self.watch is not None
            self.watched_at = time.monotonic()
            with self.flask_app.app_context():
                try:
                    self.watch()
                except Exception:  # periodic: the next pass tries again; keep serving jobs
                    log.exception("worker watch failed")
        if super().should_run_maintenance_tasks:
            self.maintain()

    def maintain(self) -> None:
        """Our maintenance (the campaign recovery pass), then RQ's.

        RQ's includes taking over the scheduler role when no scheduler holds it (a worker
        killed with its scheduler child leaves the lock for 61 s); it may fork the
        scheduler here, so the pool is emptied first: the child must inherit no database
        connection.
        """
        if self.maintenance is not None:
            with self.flask_app.app_context():
                try:
                    self.maintenance()
                except Exception:  # periodic: the next pass tries again; keep serving jobs
                    log.exception("worker maintenance failed")
        database = self.flask_app.extensions["db"]
        database.scoped.remove()
        database.engine.dispose()
        super().run_maintenance_tasks()


def task_queue() -> TaskQueue:
    tq: TaskQueue = current_app.extensions["queue"]
    return tq


def enqueue_after_commit(
    session: Session,
    func: Callable[..., Any] | str,
    *args: Any,
    queue: str = "transactional",
    job_id: str | None = None,
    retry_intervals: tuple[int, ...] = (),
    at: datetime | None = None,
    timeout: int = 600,
    at_front: bool = False,
) -> None:
    """Queue `func(*args)` once `session` commits; forget it on rollback.

    Domain modules name their jobs by dotted path (`"service.jobs.campaigns.send_batch"`),
    so they never import the job layer.
    """
    _after_commit(session, JobRequest(func, args, queue, job_id, retry_intervals, at, timeout,
                                      at_front))


def wake_after_commit(session: Session, func: str, *, at: datetime | None = None) -> None:
    """Run `func` — a job that finds its due rows itself — once `session` commits (or at
    `at`), in the embedded mode only. With Redis, every worker runs such jobs in its watch
    pass every few seconds (`worker.py`), so a job per request would only cost the request
    a Redis round trip."""
    _after_commit(session, JobRequest(func, (), at=at, embedded_only=True))


def _after_commit(session: Session, request: JobRequest) -> None:
    """Hold `request` until `session` commits (`install_session_hooks` sends it then)."""
    session.info.setdefault("jobs_after_commit", []).append(request)


def embedded_recovery(app: Flask, name: str, func: Callable[[], Any] | str, *,
                      again_after: float | None = None) -> None:
    """In the embedded mode (no Redis, so no worker runs recovery passes), run the
    recovery job `func` once at the first request, and once more `again_after` seconds
    later: work a restart interrupted only looks abandoned once its lease has run out."""

    @app.before_request
    def _first_request() -> None:
        done: set[str] = app.extensions.setdefault("embedded_recovery_done", set())
        if name in done:
            return
        done.add(name)
        if task_queue().local is None:
            return
        session = db.session()
        enqueue_after_commit(session, func, queue="default")
        if again_after is not None:
            enqueue_after_commit(session, func, queue="default",
                                 at=datetime.now(UTC) + timedelta(seconds=again_after))
        session.commit()


def install_session_hooks(session_factory: Any, app: Flask) -> None:
    @event.listens_for(session_factory, "after_commit")
    def _flush_jobs(session: Session) -> None:
        jobs: list[JobRequest] = session.info.pop("jobs_after_commit", [])
        if jobs:
            tq: TaskQueue = app.extensions["queue"]
            tq.submit_all(jobs)

    @event.listens_for(session_factory, "after_rollback")
    def _drop_jobs(session: Session) -> None:
        session.info.pop("jobs_after_commit", None)


# A timer wakes at least this often: one wait for a date far ahead would overflow.
TIMER_SLICE_SECONDS = 3600.0
# After a timer failed, its job is queued again this much later.
TIMER_RESTART_SECONDS = 5.0


class JobTimer(threading.Timer):
    """A job's timer that never dies silently.

    It waits in slices of at most TIMER_SLICE_SECONDS, and if anything fails (its wait, or
    queueing the job when it is due) it logs the error and `restart` arms a new timer for
    the same job.
    """

    def __init__(self, interval: float, function: Callable[[], Any],
                 restart: Callable[[JobTimer], None]) -> None:
        super().__init__(interval, function)
        self.due = time.monotonic() + interval
        self.restart = restart

    def run(self) -> None:
        try:
            while not self.finished.is_set():
                remaining = self.due - time.monotonic()
                if remaining <= 0:
                    self.function()
                    break
                self.finished.wait(min(remaining, TIMER_SLICE_SECONDS))
        except Exception:
            log.exception("in-process timer failed; starting it again")
            self.restart(self)
        finally:
            self.finished.set()


class InProcessWorker:
    """Runs jobs on one background thread, with the same retries, for the embedded mode.

    This is what `make run` uses: no Redis needed, and a request never waits for a job.
    Neither the job thread nor a timer dies silently: a job that fails (even with a bad
    name, or SystemExit) is logged and the thread goes on; a timer that fails is logged and
    armed again.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.jobs: stdlib_queue.Queue[JobRequest] = stdlib_queue.Queue()
        self.timers: list[threading.Timer] = []
        self.lock = threading.Lock()
        self.busy = 0
        self.thread: threading.Thread | None = None

    def alive(self) -> bool:
        return True

    def pending(self) -> int:
        return self.jobs.qsize() + self.busy + len(self.timers)

    def submit(self, request: JobRequest, attempt: int = 0) -> None:
        request.extra["attempt"] = attempt
        delay = 0.0
        if request.at is not None:
            delay = max(0.0, (request.at - datetime.now(UTC)).total_seconds())
        if delay > 0:
            self._later(delay, request)
            return
        with self.lock:
            self.busy += 1  # counted until the job has run, so drain() cannot miss it
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
                self.thread.start()
        self.jobs.put(request)

    def _later(self, delay: float, request: JobRequest) -> None:
        request.at = None

        def fire() -> None:
            self._forget(timer)
            self.submit(request, request.extra.get("attempt", 0))

        def restart(failed: JobTimer) -> None:
            self._forget(failed)
            self._later(max(failed.due - time.monotonic(), TIMER_RESTART_SECONDS), request)

        timer = JobTimer(delay, fire, restart)
        timer.daemon = True
        with self.lock:
            self.timers.append(timer)
        timer.start()

    def _forget(self, timer: threading.Timer) -> None:
        with self.lock:
            if timer in self.timers:
                self.timers.remove(timer)

    def _loop(self) -> None:
        while True:
            request = self.jobs.get()
            try:
                self._run(request)
            except BaseException:  # noqa: BLE001 - SystemExit or a bad job name: log, go on
                log.exception("in-process job %s crashed; the job thread carries on",
                              request.func)
            finally:
                with self.lock:
                    self.busy -= 1

    def _run(self, request: JobRequest) -> None:
        func = request.func
        if isinstance(func, str):
            module, _, attr = func.rpartition(".")
            func = getattr(__import__(module, fromlist=[attr]), attr)
        attempt = int(request.extra.get("attempt", 0))
        with self.app.app_context():
            try:
                func(*request.args)
            except Exception:
                if attempt < len(request.retry_intervals):
                    wait = request.retry_intervals[attempt]
                    log.warning("job %s failed; retry %d in %ss", func, attempt + 1, wait,
                                exc_info=True)
                    request.extra["attempt"] = attempt + 1
                    self._later(float(wait), request)
                else:
                    log.exception("job %s failed for good", func)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until no job is queued or running (tests, CLI commands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                idle = self.busy == 0 and self.jobs.empty()
            if idle:
                return
            time.sleep(0.01)
        raise TimeoutError("in-process jobs did not finish in time")
