"""A send survives its infrastructure: a worker SIGKILLed mid-batch, Redis restarted empty,
PostgreSQL dropping every connection; and an unsubscribe committed between two batches.

The fault tests run live `python worker.py` processes on PostgreSQL + Redis with the
default 60 s lease: a dead worker's batch must come back within seconds, from the advisory
lock its dead session gave up, not from the lease.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from sendgrid_sink import SinkServer
from service import PROJECT_ROOT, db, tokens
from service.campaigns.sending import batch_of_job
from tests.factories import list_id, subscribers
from tests.support import TEST_SECRET_KEY, kill_worker

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]


def _needs_live_services(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("needs worker processes on PostgreSQL + Redis")


class Workers:
    """`python worker.py` processes (each in a process group of its own), restarted when
    they exit as a process manager would, all stopped at the end."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with self.log.open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "worker.py", "--name", name],
                env=self.env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def kill(self, name: str) -> None:
        kill_worker(self.procs.pop(name))

    def restart_exited(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.start(name)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker_env(conf: Any, sink: SinkServer, redis_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": conf.database_url, "REDIS_URL": redis_url,
            "QUEUE_PREFIX": conf.queue_prefix, "SECRET_KEY": TEST_SECRET_KEY,
            "SENDGRID_API_KEY": "SG.test", "SENDGRID_API_HOST": sink.url,
            "PUBLIC_URL": "http://localhost", "ORG_POSTAL_ADDRESS": "1 Main St",
            "CAMPAIGN_BATCH_SIZE": "5", "CAMPAIGN_LEASE_SECONDS": "60", **extra}


@pytest.fixture
def ledger(app: Flask) -> Iterator[Engine]:
    """A connection pool of its own that survives the server ending every other session."""
    engine = create_engine(app.extensions["settings"].database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def _campaign_status(engine: Engine, cid: int) -> str:
    return str(_one(engine, "SELECT status FROM campaigns WHERE id = :c", c=cid)[0])


def _wait(condition: Callable[[], bool], seconds: float, what: str,
          workers: Workers | None = None) -> float:
    """Poll until `condition()`; return how long it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            detail = workers.log.read_text(errors="replace")[-3000:] if workers else ""
            raise AssertionError(f"{what}: not within {seconds} s\n{detail}")
        if workers is not None:
            workers.restart_exited()
        time.sleep(0.05)
    return time.monotonic() - start


def _received(sink: SinkServer, cid: int) -> Counter[str]:
    return Counter(to(m) for m in sink.messages()
                   if m.get("custom_args", {}).get("campaign_id") == str(cid))


def _everyone_once_but(received: Counter[str], n: int, bound: int) -> None:
    assert set(received) == {f"person{i}@example.com" for i in range(n)}, received
    duplicates = sum(k - 1 for k in received.values())
    assert duplicates <= bound, (duplicates, bound, received)


def test_a_killed_workers_batch_is_sent_again_within_seconds(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str, sink: SinkServer,
    tmp_path: Path, ledger: Engine,
) -> None:
    """The lease is 60 s; the batch the killed worker held goes on within 10 s."""
    _needs_live_services(backend)
    conf = app.extensions["settings"]
    subscribers(60)  # 12 batches of 5
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    sink.set_faults(1.0, ["slow"], slow_seconds=0.3)
    workers = Workers(_worker_env(conf, sink, conf.redis_url), tmp_path / "workers.log")
    redis = Redis.from_url(conf.redis_url)
    try:
        workers.start("victim")
        workers.start("survivor")
        client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
        held: list[int] = []

        def victim_holds_a_batch() -> bool:
            job = redis.hget("rq:worker:victim", "current_job")
            batch = batch_of_job(job.decode()) if isinstance(job, bytes) else None
            if batch is None:
                return False
            state = _one(ledger, "SELECT status FROM batches WHERE id = :b", b=batch)[0]
            held[:] = [batch]
            return bool(state == "sending")

        _wait(victim_holds_a_batch, 30, "the victim claims a batch", workers)
        time.sleep(0.1)  # its request is in flight
        workers.kill("victim")
        resumed = _wait(
            lambda: _one(ledger, "SELECT status FROM batches WHERE id = :b",
                         b=held[0])[0] == "done",
            10, f"batch {held[0]} of the killed worker is sent again", workers)
        _wait(lambda: _campaign_status(ledger, cid) == "sent", 30, "the campaign is sent",
              workers)
    finally:
        workers.stop_all()
        redis.close()
    assert resumed < 10
    assert get(client, staff, cid)["counts"] == {
        "total": 60, "queued": 0, "sent": 60, "failed": 0, "skipped": 0}
    _everyone_once_but(_received(sink, cid), 60, bound=5)  # the one batch in flight


@contextlib.contextmanager
def private_redis(port: int, tmp: Path) -> Iterator[Callable[[], None]]:
    """A redis-server of this test's own (never the shared one), without persistence;
    yields `restart()`, which kills it and starts it again empty."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp)]
    log = (tmp / "redis.log").open("ab")
    procs = [subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)]

    def wait_up() -> None:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(Exception):
                if Redis(port=port).ping():
                    return
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)

    def restart() -> None:
        procs[0].kill()
        procs[0].wait()
        procs[0] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_up()

    wait_up()
    try:
        yield restart
    finally:
        procs[0].kill()
        procs[0].wait()
        log.close()


def test_redis_restarted_empty_mid_campaign_loses_no_one(
    make_app: Callable[..., Flask], api_token: Headers, backend: str, sink: SinkServer,
    tmp_path: Path,
) -> None:
    """Every queued job is gone with Redis: the workers notice the batches nobody will
    send and queue them again."""
    _needs_live_services(backend)
    port = _free_port()
    with private_redis(port, tmp_path) as restart_redis:
        url = f"redis://127.0.0.1:{port}/0"
        app = make_app(campaign_batch_size=5, redis_url=url)
        with app.app_context():
            conf = app.extensions["settings"]
            engine = create_engine(conf.database_url, poolclass=NullPool)
            subscribers(60)
            client = app.test_client()
            staff = api_token("campaigner")
            cid = create(client, staff)["id"]
            sink.set_faults(1.0, ["slow"], slow_seconds=0.2)
            workers = Workers(_worker_env(conf, sink, url), tmp_path / "workers.log")
            try:
                workers.start("w1")
                workers.start("w2")
                client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
                _wait(lambda: sink.stats()["personalizations"] >= 10, 30, "sending starts",
                      workers)
                restart_redis()
                # Every waiting job is gone (workers only re-register themselves).
                assert not Redis.from_url(url).exists(f"rq:queue:{conf.queue_prefix}newsletters")
                _wait(lambda: _campaign_status(engine, cid) == "sent", 25,
                      "the campaign is sent", workers)
            finally:
                workers.stop_all()
                engine.dispose()
            assert get(client, staff, cid)["counts"] == {
                "total": 60, "queued": 0, "sent": 60, "failed": 0, "skipped": 0}
    # Jobs go, the ledger stays: the batches in flight finish, nothing is sent twice.
    _everyone_once_but(_received(sink, cid), 60, bound=0)


def test_postgres_ending_every_session_mid_campaign_loses_no_one(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str, sink: SinkServer,
    tmp_path: Path, ledger: Engine,
) -> None:
    """What a PostgreSQL restart does to the workers (every session ends at once), done
    to this test's own database only: the send completes, duplicates stay within the
    batches in flight."""
    _needs_live_services(backend)
    conf = app.extensions["settings"]
    subscribers(60)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    sink.set_faults(1.0, ["slow"], slow_seconds=0.2)
    workers = Workers(_worker_env(conf, sink, conf.redis_url), tmp_path / "workers.log")
    in_flight = 0
    try:
        workers.start("w1")
        workers.start("w2")
        client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
        db.session().close()  # this test's own session is not the subject
        for at_least in (10, 30):
            _wait(lambda n=at_least: sink.stats()["personalizations"] >= n, 30,  # type: ignore[misc]
                  "sending goes on", workers)
            with ledger.connect() as conn:
                in_flight += conn.execute(text(
                    "SELECT count(*) FROM batches WHERE status = 'sending'")).scalar_one()
                ended = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )).scalar_one()
            assert ended >= 2  # both workers' sessions at least
            app.extensions["db"].engine.dispose()  # the test's own pool is gone too
        _wait(lambda: _campaign_status(ledger, cid) == "sent", 30, "the campaign is sent",
              workers)
    finally:
        workers.stop_all()
    counts = _one(ledger, "SELECT sum(sent), sum(size) FROM batches WHERE campaign_id = :c",
                  c=cid)
    assert tuple(counts) == (60, 60)
    _everyone_once_but(_received(sink, cid), 60, bound=5 * in_flight)


def test_the_lock_not_the_lease_tells_a_dead_worker_from_a_live_one(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str,
    run_some: Callable[[int], None], ledger: Engine,
) -> None:
    """A batch whose holder's session is alive stays with it, however old its heartbeat;
    the moment that session ends, the next pass gives the batch a job at the front."""
    from service.campaigns.liveness import LOCK_NAMESPACE, lock_key
    from service.campaigns.recovery import recover, watch

    subscribers(10)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_some(1)  # the start job: two batches queued, with their jobs
    first = _one(ledger, "SELECT min(id) FROM batches WHERE campaign_id = :c", c=cid)[0]
    holder = ledger.connect()
    try:
        assert holder.execute(text("SELECT pg_try_advisory_lock(:n, :k)"),
                              {"n": LOCK_NAMESPACE, "k": lock_key(first)}).scalar_one()
        holder.execute(text("UPDATE batches SET status = 'sending', attempts = 1,"
                            " claimed_at = now() - interval '1 hour' WHERE id = :b"),
                       {"b": first})
        holder.commit()
        assert recover()["requeued_batches"] == 0  # alive: the lease does not matter
        assert watch()["requeued_batches"] == 0
    finally:
        holder.close()  # the worker's process dies: the server ends its session
    # The server ends a session a moment after its socket closes: the passes that follow
    # (every 2 s in a worker) requeue the batch once its lock is free.
    deadline = time.monotonic() + 5
    requeued = watch()["requeued_batches"]
    while requeued == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        requeued = watch()["requeued_batches"]
    assert requeued == 1
    assert _one(ledger, "SELECT status FROM batches WHERE id = :b", b=first)[0] == "queued"
    queue = app.extensions["queue"].rq_queue("newsletters")
    assert queue.get_job_ids()[0].startswith(f"al-batch-{first}-recover")


def test_an_unsubscribe_between_two_batches_stops_the_second(
    app: Flask, client: FlaskClient, api_token: Headers, run_some: Callable[[int], None],
    run_jobs: Callable[[], None], sink: SinkServer,
) -> None:
    """The audience is frozen at the start, but each batch re-checks its recipients when
    it is claimed: someone who unsubscribes after the start and before their batch is
    claimed gets nothing."""
    people = subscribers(10)  # batches of 5: person0..4, then person5..9
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_some(2)  # the start job, then the first batch
    assert sorted(_received(sink, cid)) == [f"person{i}@example.com" for i in range(5)]
    link = tokens.unsubscribe_url(people[7], [list_id("newsletter")], cid)
    answer = client.post(link.removeprefix("http://localhost"),
                         data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    run_jobs()
    received = _received(sink, cid)
    assert "person7@example.com" not in received
    assert sorted(received) == sorted(f"person{i}@example.com" for i in range(10) if i != 7)
    assert get(client, staff, cid)["counts"] == {
        "total": 10, "queued": 0, "sent": 9, "failed": 0, "skipped": 1}
