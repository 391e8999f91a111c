"""Benchmark: public JSON signups (`POST /api/v1/subscriptions`) into gunicorn on PostgreSQL.

    .venv/bin/python bench/signup.py [--requests 10000 --clients 16 --workers 4] [--worker]

Creates and migrates a scratch PostgreSQL database (server from BENCH_DATABASE_URL or
TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres), claims a Redis
database of its own, and starts `gunicorn -w WORKERS 'service:create_app()'` on
127.0.0.1:18320 with REDIS_URL set, so every signup goes through the per-IP rate limiter
(Redis) and queues its confirmation mail (its `confirmation_mails` row, which the workers'
watch pass sends). The per-IP limit is raised (SIGNUP_RATE_LIMIT) so that it never
throttles the bench, which posts from one IP.

CLIENTS concurrent clients (threads in two client processes, a new connection per
request, as gunicorn's sync workers close it anyway) post REQUESTS signups with distinct
addresses. Without `--worker` no RQ worker runs during the measurement (the confirmation
mails wait in their rows and are counted); with it one `python worker.py` sends them to a sink.
The reference, in the same run and with the same clients, is `GET /healthz` on the same
server (one `SELECT 1` and one Redis PING). At the end the database must hold exactly one
subscriber, one pending subscription and one consent record per accepted (202) request,
and one queued confirmation mail for each (without `--worker`).

With `--during-campaign` the bench first COPYs in CAMPAIGN_SIZE confirmed subscribers
(default 1,000,000) and starts the sink and CAMPAIGN_WORKERS `python worker.py` (default 2,
with WORKER_NICENESS=`--niceness`), then measures twice with the same clients: *idle* (the
workers only send the confirmation mails), then *during the campaign*: a newsletter to all
of them is sent through the real code path (`drafts.act("send")`) and, from its first 202,
the same number of signups is posted again. It prints both, the ratio of their throughputs
(target ≥ 60 %), the p99 during the campaign (target ≤ 100 ms), `/healthz` in both phases,
and how fast the campaign went while the signups ran; the campaign must still be sending
when the second phase ends, or the phase did not measure what it claims (`--sink-slow-ms`
makes a small campaign last: the smoke test's).
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


def start_app(procs: harness.Processes, url: str, redis_url: str,
              args: argparse.Namespace) -> dict[str, str]:
    """gunicorn (`args.workers` sync workers) on `args.port`, the per-IP limit raised out of
    the way; once it answers, the environment it was started with (for the sink and the
    workers)."""
    env = harness.worker_env(url, redis_url, args.port + 1,
                             SIGNUP_RATE_LIMIT="100000000/minute",
                             FORM_ALLOWED_ORIGINS="https://www.example.org")
    gunicorn = procs.start("gunicorn", [
        str(harness.BIN / "gunicorn"), "-w", str(args.workers),
        "--log-level", "warning", "--timeout", "120", "--backlog", "2048",
        "-b", f"127.0.0.1:{args.port}", "service:create_app()"], env)
    harness.wait_http(args.port, "/healthz", gunicorn)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker", action="store_true",
                        help="run one `python worker.py` (to a sink) during the measurement")
    parser.add_argument("--port", type=int, default=APP_PORT,
                        help="gunicorn port (the sink takes the next one)")
    parser.add_argument("--during-campaign", action="store_true",
                        help="measure idle, then again while a campaign sends")
    parser.add_argument("--campaign-size", type=int, default=1_000_000)
    parser.add_argument("--campaign-workers", type=int, default=2)
    parser.add_argument("--niceness", type=int, default=0,
                        help="WORKER_NICENESS of the campaign's workers")
    parser.add_argument("--sink-slow-ms", type=int, default=0,
                        help="the sink answers every request this much later (small smoke "
                             "runs: a small campaign then lasts the whole phase)")
    args = parser.parse_args()
    if args.during_campaign:
        return during_campaign(args)
    harness.sigterm_exits()
    for port in (args.port, args.port + 1):
        harness.require_free_port(port)

    from sqlalchemy import create_engine, text

    tag = secrets.token_hex(3)
    warmup = min(500, max(50, args.requests // 20))
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp, \
            harness.scratch_database("signup") as url, \
            harness.redis_database("signup") as redis_url:
        procs = harness.Processes(Path(tmp))
        try:
            env = start_app(procs, url, redis_url, args)
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
                subscribers, subscriptions, consents, jobs = conn.execute(text("""
                    SELECT (SELECT count(*) FROM subscribers),
                           (SELECT count(*) FROM subscriptions WHERE status = 'pending'),
                           (SELECT count(*) FROM consent_records WHERE action = 'signup'),
                           (SELECT count(*) FROM confirmation_mails
                            WHERE result = 'queued' AND not_before IS NOT NULL)
                """)).one()
            engine.dispose()

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
                  f"{consents:,} consent records; confirmation mails queued: {jobs:,}")
            lost = accepted - subscribers
            ok = subscribers == subscriptions == consents == accepted
            if not args.worker:
                ok = ok and jobs == accepted
            print(f"lost signups: {lost}" + ("" if ok else "  MISMATCH"))
            return 0 if ok and signups.statuses.get(202, 0) == args.requests else 1
        finally:
            procs.stop_all()


def during_campaign(args: argparse.Namespace) -> int:
    """Signups idle, then signups while a campaign sends on the same machine."""
    from sqlalchemy import create_engine, text

    from bench.campaign import BODY, seed

    harness.sigterm_exits()
    for port in (args.port, args.port + 1):
        harness.require_free_port(port)
    tag = secrets.token_hex(3)
    warmup = min(500, max(50, args.requests // 20))
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp, \
            harness.scratch_database("signup") as url, \
            harness.redis_database("signup") as redis_url:
        procs = harness.Processes(Path(tmp))
        app = None
        try:
            seed(url, args.campaign_size, 0.0)
            env = start_app(procs, url, redis_url, args)
            slow = (["--fault-rate", "1", "--faults", "slow",
                     "--slow-seconds", str(args.sink_slow_ms / 1000)] if args.sink_slow_ms else [])
            sink = procs.start("sink", harness.sink_command(args.port + 1, "--count-only",
                                                            *slow), env)
            harness.wait_http(args.port + 1, "/_sink/stats", sink)
            worker_env = {**env, "WORKER_NICENESS": str(args.niceness)}
            for k in range(args.campaign_workers):
                procs.start(f"worker{k}", [harness.PYTHON, "worker.py", "--name",
                                           f"bench-signup-{os.getpid()}-{k}"], worker_env)

            os.environ.update({key: env[key] for key in (
                "DATABASE_URL", "REDIS_URL", "QUEUE_PREFIX", "SECRET_KEY", "SENDGRID_API_KEY",
                "SENDGRID_API_HOST", "PUBLIC_URL", "MAIL_FROM", "ORG_NAME",
                "ORG_POSTAL_ADDRESS")})
            from service import create_app, db
            from service.campaigns.drafts import CampaignIn, act, create_draft
            from service.campaigns.sending import counts
            from service.models import Campaign

            app = create_app()

            def sent_so_far(campaign_id: int) -> tuple[str, int]:
                with app.app_context():
                    session = db.session()
                    row = session.get(Campaign, campaign_id)
                    status = row.status.value if row else "missing"
                    sent = counts(session, campaign_id)["sent"]
                    session.rollback()
                return str(status), sent

            load_run(args.port, "signup", f"warm{tag}", 0, warmup, args.clients)
            load_run(args.port, "healthz", tag, 0, warmup, args.clients)
            load_idle = harness.load()
            idle = load_run(args.port, "signup", tag, 0, args.requests, args.clients)
            idle_ref = load_run(args.port, "healthz", tag, 0, args.requests, args.clients)

            with app.app_context():
                session = db.session()
                campaign = create_draft(session, CampaignIn().load({
                    "name": "Bench newsletter", "kind": "newsletter",
                    "subject": "News from {{ state }}, {{ first_name }}", "body": BODY,
                    "lists": ["newsletter"]}), "bench")
                session.commit()
                campaign_id = campaign.id
                act(session, campaign, "send", "bench")
                session.commit()
            t_send = time.perf_counter()
            while sent_so_far(campaign_id)[1] == 0:  # (the sink counts confirmations too)
                if time.perf_counter() - t_send > 600:
                    raise RuntimeError("the campaign sent nothing in 600 s")
                time.sleep(0.02)
            load_during = harness.load()
            sent_before = sent_so_far(campaign_id)[1]
            t_phase = time.perf_counter()
            during = load_run(args.port, "signup", tag, args.requests, args.requests,
                              args.clients)
            during_ref = load_run(args.port, "healthz", tag, 0, args.requests, args.clients)
            phase = time.perf_counter() - t_phase
            status_after, sent_after = sent_so_far(campaign_id)
            load_end = harness.load()

            accepted = idle.statuses.get(202, 0) + during.statuses.get(202, 0) + warmup
            engine = create_engine(url)
            with engine.connect() as conn:
                subscribers, subscriptions, consents = conn.execute(text("""
                    SELECT (SELECT count(*) FROM subscribers WHERE email LIKE 'bench-%'),
                           (SELECT count(*) FROM subscriptions WHERE status = 'pending'),
                           (SELECT count(*) FROM consent_records WHERE action = 'signup')
                """)).one()
            engine.dispose()

            rate = {name: len(r.latencies) / (r.ended - r.started)
                    for name, r in (("idle", idle), ("during", during), ("idle_ref", idle_ref),
                                    ("during_ref", during_ref))}
            lat = sorted(during.latencies)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            print(f"{args.requests:,} signups per phase, {args.clients} clients (2 processes), "
                  f"gunicorn -w {args.workers} (sync), PostgreSQL + Redis; "
                  f"{args.campaign_workers} worker.py (WORKER_NICENESS={args.niceness}) "
                  f"sending the confirmations, then also a {args.campaign_size:,}-recipient "
                  f"newsletter to the sink")
            print(describe("idle: POST signups", idle))
            print(describe("idle: GET /healthz", idle_ref))
            print(describe("campaign: POST signups", during))
            print(describe("campaign: GET /healthz", during_ref))
            print(f"load average: idle phase {load_idle}, campaign phase {load_during}, "
                  f"end {load_end}")
            print(f"campaign during the phase ({phase:.1f} s): {sent_before:,} -> "
                  f"{sent_after:,} sent ({(sent_after - sent_before) / phase:,.0f} "
                  f"recipients/s), still {status_after}")
            share = rate["during"] / rate["idle"]
            verdict = "met" if share >= 0.6 and p99 <= 100 else "MISSED"
            print(f"signups during / idle: {share:.1%} (target ≥ 60 %); p99 during "
                  f"{p99:.1f} ms (target ≤ 100 ms): {verdict}; idle signups / idle /healthz "
                  f"{rate['idle'] / rate['idle_ref']:.1%}")
            print(f"accepted (202, incl. {warmup} warm-up): {accepted:,}; in the database: "
                  f"{subscribers:,} subscribers, {subscriptions:,} pending subscriptions, "
                  f"{consents:,} consent records")
            ok = subscribers == subscriptions == consents == accepted
            print(f"lost signups: {accepted - subscribers}" + ("" if ok else "  MISMATCH"))
            if status_after != "sending":
                print("NOT MEASURED: the campaign ended before the signups did "
                      "(make --campaign-size larger)")
                ok = False
            complete = (idle.statuses.get(202, 0) == during.statuses.get(202, 0)
                        == args.requests)
            return 0 if ok and complete else 1
        finally:
            if app is not None:
                app.extensions["db"].engine.dispose()
            procs.stop_all()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
