"""Benchmark: public JSON signups (`POST /api/v1/subscriptions`) into gunicorn on PostgreSQL.

    .venv/bin/python bench/signup.py [--requests 10000 --clients 16 --workers 4] [--worker]

Creates and migrates a scratch PostgreSQL database (server from BENCH_DATABASE_URL or
TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres), claims a Redis
database of its own, and starts `gunicorn -w WORKERS 'service:create_app()'` on
127.0.0.1:18320 with REDIS_URL set, so every signup goes through the per-IP rate limiter
(Redis) and queues its confirmation mail on RQ after the commit. The per-IP limit is
raised (SIGNUP_RATE_LIMIT) so that it never throttles the bench, which posts from one IP.

CLIENTS concurrent clients (threads in two client processes, a new connection per
request, as gunicorn's sync workers close it anyway) post REQUESTS signups with distinct
addresses. Without `--worker` no RQ worker runs during the measurement (the confirmation
jobs wait in Redis and are counted); with it one `python worker.py` sends them to a sink.
The reference, in the same run and with the same clients, is `GET /healthz` on the same
server (one `SELECT 1` and one Redis PING). At the end the database must hold exactly one
subscriber, one pending subscription and one consent record per accepted (202) request,
and Redis one confirmation job for each (without `--worker`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

APP_PORT, SINK_PORT = 18320, 18321


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0


def _client(port: int, kind: str, tag: str, indices: list[int], threads: int) -> Result:
    """One client process: `threads` threads working through `indices` (one request each)."""
    result = Result()
    lock = threading.Lock()
    todo = iter(indices)

    def run() -> None:
        local_lat: list[float] = []
        local_status: dict[int, int] = {}
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            if kind == "signup":
                body = json.dumps({
                    "email": f"bench-{tag}-{i}@example.org", "lists": ["newsletter"],
                    "first_name": "Ana", "last_name": "García", "postal_code": "94110",
                    "lang": "es" if i % 5 == 0 else "en",
                }).encode()
                method, path = "POST", "/api/v1/subscriptions"
                headers = {"Content-Type": "application/json", "User-Agent": "bench/signup"}
            else:
                body, method, path, headers = None, "GET", "/healthz", {}
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except OSError:
                status = 0
            local_lat.append(time.perf_counter() - start)
            local_status[status] = local_status.get(status, 0) + 1
        with lock:
            result.latencies.extend(local_lat)
            for status, n in local_status.items():
                result.statuses[status] = result.statuses.get(status, 0) + n

    workers = [threading.Thread(target=run) for _ in range(threads)]
    result.started = time.time()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    result.ended = time.time()
    return result


def _client_star(args: tuple[int, str, str, list[int], int]) -> Result:
    return _client(*args)


def load_run(port: int, kind: str, tag: str, start: int, count: int, clients: int,
             processes: int = 2) -> Result:
    """`count` requests from `clients` concurrent clients spread over `processes` processes."""
    indices = list(range(start, start + count))
    parts = [indices[p::processes] for p in range(processes)]
    threads = [clients // processes + (1 if p < clients % processes else 0)
               for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_client_star, [(port, kind, tag, parts[p], threads[p])
                                          for p in range(processes)])
    total = Result(started=min(r.started for r in results), ended=max(r.ended for r in results))
    for r in results:
        total.latencies.extend(r.latencies)
        for status, n in r.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + n
    return total


def describe(name: str, r: Result) -> str:
    lat = sorted(r.latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    rate = len(lat) / (r.ended - r.started)
    return (f"{name:28} {rate:>8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
            f"max {lat[-1] * 1000:6.0f} ms   statuses {dict(sorted(r.statuses.items()))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker", action="store_true",
                        help="run one `python worker.py` (to a sink) during the measurement")
    parser.add_argument("--port", type=int, default=APP_PORT,
                        help="gunicorn port (the sink takes the next one)")
    args = parser.parse_args()
    harness.sigterm_exits()
    for port in (args.port, args.port + 1):
        harness.require_free_port(port)

    from redis import Redis
    from rq import Queue
    from sqlalchemy import create_engine, text

    tag = secrets.token_hex(3)
    warmup = min(500, max(50, args.requests // 20))
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp, \
            harness.scratch_database("signup") as url, \
            harness.redis_database("signup") as redis_url:
        procs = harness.Processes(Path(tmp))
        try:
            env = harness.worker_env(url, redis_url, args.port + 1,
                                     SIGNUP_RATE_LIMIT="100000000/minute",
                                     FORM_ALLOWED_ORIGINS="https://www.example.org")
            gunicorn = procs.start("gunicorn", [
                str(harness.BIN / "gunicorn"), "-w", str(args.workers),
                "--log-level", "warning", "--timeout", "120", "--backlog", "2048",
                "-b", f"127.0.0.1:{args.port}",
                "service:create_app()"], env)
            harness.wait_http(args.port, "/healthz", gunicorn)
            if args.worker:
                sink = procs.start(
                    "sink", harness.sink_command(args.port + 1, "--no-content"), env)
                harness.wait_http(args.port + 1, "/_sink/stats", sink)
                procs.start("worker", [harness.PYTHON, "worker.py"], env)

            load_run(args.port, "signup", f"warm{tag}", 0, warmup, args.clients)
            load_run(args.port, "healthz", tag, 0, warmup, args.clients)
            before = harness.load()
            signups = load_run(args.port, "signup", tag, 0, args.requests, args.clients)
            reference = load_run(args.port, "healthz", tag, 0, args.requests, args.clients)
            after = harness.load()

            accepted = signups.statuses.get(202, 0) + warmup
            engine = create_engine(url)
            with engine.connect() as conn:
                subscribers, subscriptions, consents = conn.execute(text("""
                    SELECT (SELECT count(*) FROM subscribers),
                           (SELECT count(*) FROM subscriptions WHERE status = 'pending'),
                           (SELECT count(*) FROM consent_records WHERE action = 'signup')
                """)).one()
            engine.dispose()
            redis = Redis.from_url(redis_url)
            queue = Queue("bench-transactional", connection=redis)
            jobs = queue.count
            redis.close()

            mails = ("one worker.py sending confirmations to the sink" if args.worker
                     else "no RQ worker running")
            print(f"{args.requests:,} signups with distinct addresses, {args.clients} clients "
                  f"(2 processes), gunicorn -w {args.workers} (sync), PostgreSQL + Redis; "
                  f"{mails}")
            print(describe("POST /api/v1/subscriptions", signups))
            print(describe("GET /healthz (reference)", reference))
            print(f"load average before / after: {before} / {after}")
            print(f"accepted (202, incl. {warmup} warm-up): {accepted:,}; in the database: "
                  f"{subscribers:,} subscribers, {subscriptions:,} pending subscriptions, "
                  f"{consents:,} consent records; confirmation jobs queued: {jobs:,}")
            lost = accepted - subscribers
            ok = subscribers == subscriptions == consents == accepted
            if not args.worker:
                ok = ok and jobs == accepted
            print(f"lost signups: {lost}" + ("" if ok else "  MISMATCH"))
            return 0 if ok and signups.statuses.get(202, 0) == args.requests else 1
        finally:
            procs.stop_all()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
