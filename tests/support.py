"""What the fixtures and the test modules share that is not a fixture: the backends the
run may use, and driving the command line.

`TEST_DATABASE_URL` (a PostgreSQL server URL) and `TEST_REDIS_URL` add the PostgreSQL +
Redis backend; with `CI=true` both are required.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from service import PROJECT_ROOT

CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

# The signing key of every app and worker the tests start (32 bytes or more, as production asks).
TEST_SECRET_KEY = "test-secret-key-used-only-by-the-test-suite"


def backends() -> list[str]:
    return ["sqlite", "postgres"] if (PG_URL and REDIS_URL) else ["sqlite"]


def worker_env(app: Flask, sink_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a `worker.py` a test starts: the app's database, Redis and queue
    prefix, the test key, the sink at `sink_url` (if any), and `extra` (variable: value)."""
    conf = app.extensions["settings"]
    env = {**os.environ, "DATABASE_URL": conf.database_url, "REDIS_URL": conf.redis_url,
           "QUEUE_PREFIX": conf.queue_prefix, "SECRET_KEY": TEST_SECRET_KEY,
           "PUBLIC_URL": "http://localhost", "ORG_POSTAL_ADDRESS": "1 Main St"}
    if sink_url:
        env.update(SENDGRID_API_KEY="SG.test", SENDGRID_API_HOST=sink_url)
    return {**env, **extra}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """worker.py in a process group of its own (RQ forks its scheduler into it), so the
    whole group can be signalled; its output is appended to `log`."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=env,
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL a `start_worker` process with its scheduler child (its whole process group),
    as a lost machine or container would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


def stop_worker(worker: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a `start_worker` process as a deployment does (SIGTERM: it finishes its job),
    then SIGKILL whatever of its group is left after `timeout` seconds."""
    worker.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout)
    kill_worker(worker)


def run_cli(app: Flask, *args: str) -> Any:
    """Run a `flask` command of the app (exceptions propagate) and return its result."""
    result = app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
    return result


@contextlib.contextmanager
def serving(app: Flask, port: int) -> Iterator[str]:
    """`app` served on 127.0.0.1:`port` by a threaded WSGI server, for browsers, workers
    and the sink to reach; its URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def run_jobs_of(app: Flask, *, due_within: float = 0.0) -> None:
    """Run every queued job to completion: RQ SimpleWorker on Redis (after the watch
    pass's confirmation mails, as a worker does), or the in-process worker.

    `due_within=60` also fast-forwards the clock: jobs and confirmation mails due within
    that many seconds (retries after a back-off) are run now, until none is left.
    """
    from service.jobs.subscriptions import send_due_confirmations

    tq = app.extensions["queue"]
    while True:
        early = _confirmations_due_now(app, due_within)
        if tq.local is not None:
            tq.local.drain()
            early += _fire_local_timers(tq.local, due_within)
        else:
            with app.app_context():
                send_due_confirmations()
            tq.make_worker().work(burst=True)
            early += _promote_scheduled(tq, due_within)
        if not early:
            return


def _confirmations_due_now(app: Flask, due_within: float) -> int:
    """Confirmation mails waiting for a retry within `due_within` seconds: due now."""
    if due_within <= 0:
        return 0
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from service import db
    from service.models import ConfirmationMail as Mail

    with app.app_context():
        session = db.session()
        now = datetime.now(UTC)
        moved = session.execute(
            update(Mail).where(Mail.result == "queued", Mail.not_before > now,
                               Mail.not_before <= now + timedelta(seconds=due_within))
            .values(not_before=now).execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return int(moved)


def _fire_local_timers(local: Any, due_within: float) -> int:
    timers = [t for t in list(local.timers) if t.interval <= due_within]
    for timer in timers:
        timer.cancel()
        timer.function()
    return len(timers)


def _promote_scheduled(tq: Any, due_within: float) -> int:
    from datetime import UTC, datetime, timedelta

    horizon = datetime.now(UTC) + timedelta(seconds=due_within)
    promoted = 0
    for queue in tq.queues_in_order():
        registry = queue.scheduled_job_registry
        for job_id in registry.get_job_ids():
            if registry.get_scheduled_time(job_id) <= horizon:
                job = queue.fetch_job(job_id)
                registry.remove(job_id)
                if job is not None:
                    queue.enqueue_job(job)
                    promoted += 1
    return promoted
