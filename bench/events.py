"""Benchmark: the Event Webhook storm of a 1,000,000-recipient send, ingested and applied.

    .venv/bin/python bench/events.py 1000000     # also: 100000; --batch 5000 --clients 2

For N recipients (a sending campaign with an action URL, N subscribers in four states and
two languages, N sent deliveries, all COPYed into a scratch PostgreSQL database) it makes
the events SendGrid would post: N processed, N delivered, 0.3 N opens, 0.05 N clicks (half
on the action URL, with a tracking parameter), 0.01 N hard bounces, 0.001 N spam reports
(2.361 N events), in signed batches of 5,000 in SendGrid's shape, roughly in time order
(a block's processed and delivered events share a batch, the engagement comes after).

1. **Reference**: the rows the webhook stores for those batches (one `webhook_batches`
   row per post: the body as it came, its SHA-256, its event count), `COPY`ed into the
   same table (same indexes, empty); only the `COPY` is timed (the rows are built before).
   Then the table is emptied again.
2. **Ingestion**: `gunicorn -w 2 'service:create_app()'` takes the batches from 2 client
   threads (every batch signed before the clock starts, as SendGrid signs on its side).
   No worker runs yet: the figure is what SendGrid waits for (verify, parse, store the
   batch).
3. **Applying**: two `worker.py` processes start and run the queued jobs until no batch is
   left, timed from the moment both have registered with RQ (as a deployment's running
   workers are when events arrive; the time from their start is printed too):
   deduplication keys, suppressions, subscriber
   statuses, delivery `event_status`, hourly counters, unique opens/clicks/actions, links,
   the per-locale and per-state breakdowns and the circuit breaker's checks.
4. **Checks**: every figure of the campaign's statistics, the suppressions, the
   deliveries' statuses and the breakdowns are what the events imply, after two batches
   were posted again and two re-sent with new `sg_event_id`s (and applied: nothing
   changes, no key is added).

Before (1) and before (2) PostgreSQL checkpoints (the seed leaves gigabytes of WAL), so
neither pays for the other's writes. End to end is (2) + (3): posting every event and
applying it, back to back. It prints the
load average before and after (the machine may be shared). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    PYTHON,
    Processes,
    checkpoint,
    cpu_seconds,
    descendants,
    libpq,
    load,
    post_json,
    postgres_pids,
    redis_database,
    require_free_port,
    scratch_database,
    sigterm_exits,
    wait_http,
    worker_env,
)

APP_PORT = 18320
ACTION_URL = "https://act.example.org/petition"
STATES = ["CA", "NY", "TX", "IL"]
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"


def seed(url: str, n: int) -> int:
    """N subscribers (ids 1..N; every 5th Spanish), a sending campaign with an action URL,
    one sent delivery each. Returns the campaign id."""
    import psycopg

    dsn = libpq(url)
    stamp = "2026-01-01 00:00:00+00"
    with psycopg.connect(dsn) as conn:
        campaign_id = conn.execute(
            "INSERT INTO campaigns (name, kind, subject, preheader, body, format, variants, "
            "segment, source_code, status, status_reason, created_by, created_at, updated_at, "
            "started_at, action_url) VALUES ('Storm', 'newsletter', 'News', '', 'Hello', "
            "'markdown', '{}', '{}', '', 'sending', '', 'bench', now(), now(), "
            # Started "in the future": the workers' recovery pass would otherwise finish a
            # sending campaign without batches after its lease, and the breaker only
            # judges campaigns that are sending.
            "now() + interval '1 day', %s) "
            "RETURNING id", (ACTION_URL,)).fetchone()[0]  # type: ignore[index]
        chunk = 100_000
        with conn.cursor() as cur:
            with cur.copy("COPY subscribers (id, email, email_key, first_name, last_name, "
                          "postal_code, state, locale, status, attributes, created_at, "
                          "updated_at) FROM STDIN") as copy:
                for start in range(1, n + 1, chunk):
                    buf = io.StringIO()
                    for i in range(start, min(n, start + chunk - 1) + 1):
                        email = f"reader{i}@example{i % 97}.org"
                        locale = "es" if i % 5 == 0 else "en"
                        buf.write(f"{i}\t{email}\t{email}\tAna\tGarcía\t\t{STATES[i % 4]}\t"
                                  f"{locale}\tactive\t{{}}\t{stamp}\t{stamp}\n")
                    copy.write(buf.getvalue())
            with cur.copy("COPY deliveries (campaign_id, subscriber_id, status, reason, "
                          "message_id, sent_at, event_status) FROM STDIN") as copy:
                for start in range(1, n + 1, chunk):
                    copy.write("".join(
                        f"{campaign_id}\t{i}\tsent\t\tm{i}\t{stamp}\t\n"
                        for i in range(start, min(n, start + chunk - 1) + 1)))
            cur.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), %s)", (n,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE subscribers")
        conn.execute("VACUUM ANALYZE deliveries")
    return int(campaign_id)


def events_of(n: int, campaign_id: int, salt: str) -> Iterator[dict[str, Any]]:
    """The send's events in (roughly) the order SendGrid posts them."""
    t0 = int(time.time()) - 3 * 3600
    cid = str(campaign_id)

    def event_id(kind: str, i: int) -> str:
        # SendGrid's ids are base64 of "<event>-0-<number>-<random>-0": random after the
        # event's name, so the unique index takes them all over (as it would in production).
        noise = hashlib.md5(f"{salt}{i}".encode()).hexdigest()[:22]
        return base64.b64encode(f"{kind}-0-{i}-{noise}-0".encode()).decode()

    def base(kind: str, i: int, at: int) -> dict[str, Any]:
        return {"email": f"reader{i}@example{i % 97}.org", "timestamp": at, "event": kind,
                "sg_event_id": event_id(kind, i), "sg_message_id":
                f"m{i}.filterdrecv-5645d9c87f-9hvqp-1-5F9A2B3C-4.0",
                "smtp-id": f"<m{i}@ismtpd0001p1iad2.sendgrid.net>", "category": ["newsletter"],
                "campaign_id": cid, "subscriber_id": str(i)}

    block = 2500
    for start in range(1, n + 1, block):
        people = range(start, min(n, start + block - 1) + 1)
        for i in people:
            yield base("processed", i, t0 + i // 200)
        for i in people:
            yield {**base("delivered", i, t0 + i // 200 + 2), "response": "250 2.0.0 OK",
                   "ip": "149.72.1.1", "tls": 1}
    for i in range(1, n + 1):
        at = t0 + 3600 + i // 300
        if i % 10 < 3:
            yield {**base("open", i, at), "useragent": UA, "ip": "203.0.113.7",
                   "sg_machine_open": False}
        if i % 20 == 0:
            url = (f"{ACTION_URL}?utm_source=email&utm_campaign={cid}" if i % 40 == 0
                   else f"https://example.org/news/{i % 5}")
            yield {**base("click", i, at + 30), "useragent": UA, "ip": "203.0.113.7",
                   "url": url, "url_offset": {"index": 0, "type": "html"}}
        if i % 100 == 7:
            yield {**base("bounce", i, at), "type": "bounce", "status": "5.1.1",
                   "reason": "550 5.1.1 The email account that you tried to reach does not "
                             "exist.", "bounce_classification": "Invalid Address"}
        if i % 1000 == 13:
            yield base("spamreport", i, at + 60)


def expected(n: int) -> dict[str, int]:
    r = range(1, n + 1)
    opens = sum(1 for i in r if i % 10 < 3)
    clicks = sum(1 for i in r if i % 20 == 0)
    return {"processed": n, "delivered": n, "opens": opens, "unique_opens": opens,
            "clicks": clicks, "unique_clicks": clicks,
            "actions": sum(1 for i in r if i % 40 == 0),
            "bounces": sum(1 for i in r if i % 100 == 7),
            "spam_reports": sum(1 for i in r if i % 1000 == 13)}


def write_batches(n: int, campaign_id: int, size: int, folder: Path, salt: str) -> list[Path]:
    import orjson

    paths: list[Path] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        path = folder / f"batch{len(paths):05d}.json"
        path.write_bytes(orjson.dumps(batch) + b"\r\n")
        paths.append(path)
        batch.clear()

    for event in events_of(n, campaign_id, salt):
        batch.append(event)
        if len(batch) == size:
            flush()
    if batch:
        flush()
    return paths


def reference_copy(url: str, paths: list[Path]) -> tuple[float, int]:
    """COPY the rows the webhook stores for these batches into `webhook_batches`, 20 to a
    COPY; the time of the COPYs alone, and the events they hold. Empties the table again."""
    import hashlib

    import orjson
    import psycopg

    from service.db import utcnow

    dsn = libpq(url)
    now = utcnow()
    rows = []
    events = 0
    for path in paths:
        body = path.read_bytes()
        count = len(orjson.loads(body))
        events += count
        rows.append((hashlib.sha256(body).hexdigest(), body.decode(), count, now))
    copying = 0.0
    with psycopg.connect(dsn) as conn:
        for start in range(0, len(rows), 20):
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(
                    "COPY webhook_batches (body_hash, body, events, received_at) "
                    "FROM STDIN") as copy:
                for row in rows[start:start + 20]:
                    copy.write_row(row)
            conn.commit()
            copying += time.perf_counter() - started
        count = conn.execute("SELECT count(*) FROM webhook_batches").fetchone()[0]  # type: ignore[index]
        assert count == len(rows), (count, len(rows))
        conn.execute("TRUNCATE webhook_batches RESTART IDENTITY")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE webhook_batches")
    return copying, events


def post_all(paths: list[Path], key: Any, clients: int,
             rewrite: Any = None) -> tuple[float, list[dict[str, Any]]]:
    """Post the batches from `clients` threads; the seconds it took and the answers.

    Every batch is signed before the clock starts: signing is SendGrid's work, on its
    machines, and would otherwise take this machine's CPU from the server measured."""
    from sendgrid_sink.signing import signature_headers

    def body_of(path: Path) -> bytes:
        """The batch as posted (read again for the post: a million-recipient storm's
        bodies are 850 MB, too much to hold between signing and posting)."""
        body = path.read_bytes()
        return rewrite(body) if rewrite is not None else body

    def post(item: tuple[Path, dict[str, str]]) -> dict[str, Any]:
        path, headers = item
        return post_json(APP_PORT, "/webhooks/sendgrid", body_of(path), headers)

    ready = [(path, {"Content-Type": "application/json",
                     **signature_headers(key, body_of(path))}) for path in paths]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(post, ready))
    return time.perf_counter() - started, results


def breakdown_timings(session: Any, campaign_id: int) -> tuple[float, float]:
    """Median ms of reading the kept breakdowns, and of the grouped query that would count
    one of their figures (unique opens by locale) from the unique markers instead."""
    import statistics

    from sqlalchemy import text

    from service.webhooks.stats import breakdowns

    def median_ms(run: Any) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    grouped = text(
        "SELECT s.locale, count(*) FROM campaign_event_uniques u "
        "JOIN subscribers s ON s.id = u.recipient::bigint "
        "WHERE u.campaign_id = :c AND u.event = 'open' GROUP BY s.locale")
    return (median_ms(lambda: breakdowns(session, campaign_id)),
            median_ms(lambda: session.execute(grouped, {"c": campaign_id}).all()))


def applied_and_waiting(conn: Any) -> tuple[int, int]:
    """Events applied (their keys stored), batches still waiting."""
    from sqlalchemy import text

    row = conn.execute(text(
        "SELECT (SELECT count(*) FROM webhook_event_keys), (SELECT count(*) FROM webhook_batches)")
    ).one()
    return int(row[0]), int(row[1])


def wait_registered(redis_url: str, names: list[str], timeout: float = 60.0) -> float:
    """The moment every worker named has registered with RQ (imports and set-up done):
    a running deployment's workers are past this point when events arrive."""
    from redis import Redis
    from rq import Worker

    redis = Redis.from_url(redis_url)
    deadline = time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            if set(names) <= {w.name for w in Worker.all(connection=redis)}:
                return time.perf_counter()
            time.sleep(0.02)
    finally:
        redis.close()
    raise RuntimeError(f"workers {names} did not register within {timeout:.0f} s")


def wait_applied(engine: Any, procs: Any, workers: int, total: int, timeout: float) -> None:
    """Until no batch waits (a worker's death raises), then `total` events must be applied.

    Only the small batches table is polled: a batch is deleted in the transaction that
    stores its events' keys, so none left means all applied. Counting the keys every
    0.1 s instead scanned up to 400 MB each time, on the same two cores as the workers."""
    from sqlalchemy import text

    started = time.perf_counter()
    with engine.connect() as conn:
        while True:
            waiting = conn.execute(text("SELECT count(*) FROM webhook_batches")).scalar_one()
            conn.rollback()
            if waiting == 0:
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{waiting:,} batches still waiting")
            for k in range(workers):
                if procs.procs[1 + k].poll() is not None:
                    raise RuntimeError(procs.log_tail(f"worker{k}"))
            time.sleep(0.1)
        rows, _waiting = applied_and_waiting(conn)
    if rows != total:
        raise RuntimeError(f"no batch waits but {rows:,} of {total:,} events are applied")


def main() -> int:  # noqa: PLR0915 - one run, step by step
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="recipients")
    parser.add_argument("--batch", type=int, default=5000, help="events per post")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=APP_PORT)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    globals()["APP_PORT"] = args.port
    sigterm_exits()
    require_free_port(args.port)

    import orjson
    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.orm import Session

    from sendgrid_sink.signing import new_private_key, public_key_b64

    ok = True
    print(f"load average at the start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-events-",
                                     dir=os.environ.get("BENCH_TMP")) as tmp, \
            scratch_database("events") as url, redis_database("events") as redis_url:
        procs = Processes(Path(tmp))
        try:
            started = time.perf_counter()
            campaign_id = seed(url, args.n)
            salt = secrets.token_hex(3)
            paths = write_batches(args.n, campaign_id, args.batch, Path(tmp), salt)
            print(f"{args.n:,} subscribers and deliveries seeded, {len(paths)} batches written "
                  f"in {time.perf_counter() - started:.1f} s")

            checkpoint(url)
            copy_s, total = reference_copy(url, paths)
            copy_rate = total / copy_s
            print(f"reference: COPY of the same {len(paths):,} batches ({total:,} events) into "
                  f"webhook_batches: {copy_s:.2f} s, {copy_rate:,.0f} events/s")

            key = new_private_key()
            env = worker_env(url, redis_url, 9, SENDGRID_WEBHOOK_PUBLIC_KEY=public_key_b64(key))
            web = procs.start("web", [str(Path(PYTHON).parent / "gunicorn"), "-w",
                                      str(args.web_workers), "--log-level", "warning",
                                      "--timeout", "300", "-b", f"127.0.0.1:{args.port}",
                                      "service:create_app()"], env)
            wait_http(args.port, "/healthz", web, timeout=60)

            checkpoint(url)
            ingest_s, results = post_all(paths, key, args.clients)
            stored = sum(r["queued"] for r in results)
            ingest_rate = total / ingest_s
            print(f"ingestion: {total:,} events in {ingest_s:.2f} s, {ingest_rate:,.0f} "
                  f"events/s = {ingest_rate / copy_rate:.1%} of the COPY reference "
                  f"(load {load()})")
            if stored != total:
                print(f"CHECK FAILED: stored {stored:,} of {total:,}")
                ok = False

            engine = create_engine(url)
            started = time.perf_counter()
            names = [f"bench-events-{os.getpid()}-{k}" for k in range(args.workers)]
            for k, name in enumerate(names):
                procs.start(f"worker{k}", [PYTHON, "worker.py", "--name", name], env)
            registered = wait_registered(redis_url, names)
            workers = [p for k in range(args.workers) for p in descendants(procs.procs[1 + k].pid)]
            database = postgres_pids()
            cpu_before = cpu_seconds(workers), cpu_seconds(database)
            wait_applied(engine, procs, args.workers, total, args.timeout)
            done = time.perf_counter()
            worker_cpu = cpu_seconds(workers) - cpu_before[0]
            # Backends started meanwhile (the workers' connections) count whole.
            database_cpu = cpu_seconds(sorted(set(database) | set(postgres_pids()))) - cpu_before[1]
            apply_s = done - registered
            end_to_end = total / (ingest_s + apply_s)
            print(f"applying: {apply_s:.2f} s from the workers' registration, "
                  f"{total / apply_s:,.0f} events/s ({done - started:.2f} s from their start, "
                  f"{total / (done - started):,.0f} events/s; load {load()})")
            print(f"CPU while applying: workers {worker_cpu:.1f} s ({worker_cpu / apply_s:.2f} "
                  f"cores, {worker_cpu / total * 1e6:.1f} µs per event), PostgreSQL "
                  f"{database_cpu:.1f} s ({database_cpu / apply_s:.2f} cores, "
                  f"{database_cpu / total * 1e6:.1f} µs per event)")
            print(f"end to end (posted and applied): {ingest_s + apply_s:.2f} s, "
                  f"{end_to_end:,.0f} events/s")

            # Idempotency: the same batches again, and re-sent with new sg_event_ids.
            def new_ids(body: bytes) -> bytes:
                events = orjson.loads(body)
                for e in events:
                    e["sg_event_id"] = "re" + e["sg_event_id"]
                return orjson.dumps(events) + b"\r\n"

            post_all(paths[:2], key, 1)
            post_all(paths[-2:], key, 1, rewrite=new_ids)
            wait_applied(engine, procs, args.workers, total, args.timeout)  # nothing new

            os.environ.update({k: env[k] for k in ("DATABASE_URL", "SECRET_KEY")})
            from service.db import make_engine
            from service.models import (
                Campaign,
                CampaignStatus,
                Delivery,
                Subscriber,
                SubscriberStatus,
                Suppression,
            )
            from service.webhooks.stats import campaign_stats

            with Session(make_engine(url)) as session:
                figures = campaign_stats(session, campaign_id)
                want = expected(args.n)
                for name, value in want.items():
                    if figures[name] != value:
                        print(f"CHECK FAILED: {name} {figures[name]:,} != {value:,}")
                        ok = False
                by_locale = figures["by_locale"]
                for name in ("delivered", "unique_opens", "unique_clicks", "actions"):
                    if sum(v[name] for v in by_locale.values()) != want[name]:
                        print(f"CHECK FAILED: by_locale {name}: {by_locale}")
                        ok = False
                    if sum(v[name] for v in figures["by_state"].values()) != want[name]:
                        print(f"CHECK FAILED: by_state {name}: {figures['by_state']}")
                        ok = False
                read_ms, grouped_ms = breakdown_timings(session, campaign_id)
                suppressed = session.scalar(select(func.count()).select_from(Suppression))
                if suppressed != want["bounces"] + want["spam_reports"]:
                    print(f"CHECK FAILED: {suppressed} suppressions")
                    ok = False
                bounced = session.scalar(select(func.count()).select_from(Subscriber).where(
                    Subscriber.status == SubscriberStatus.bounced))
                statuses = dict(session.execute(
                    select(Delivery.event_status, func.count()).group_by(Delivery.event_status)
                ).all())
                status = session.get(Campaign, campaign_id).status  # type: ignore[union-attr]
                if status != CampaignStatus.sending:
                    print(f"CHECK FAILED: campaign is {status}")
                    ok = False
                if bounced != want["bounces"]:
                    print(f"CHECK FAILED: {bounced} bounced subscribers")
                    ok = False
                if sum(statuses.values()) != args.n or statuses.get("", 0):
                    print(f"CHECK FAILED: delivery statuses {statuses}")
                    ok = False
            with engine.connect() as conn:
                keys_bytes = conn.execute(text(
                    "SELECT pg_total_relation_size('webhook_event_keys')")).scalar_one()
                print(f"deduplication keys on disk: {keys_bytes / 2**20:,.0f} MiB, "
                      f"{keys_bytes / total:.0f} bytes per event")
                if applied_and_waiting(conn) != (total, 0):
                    print("CHECK FAILED: the duplicates changed the stored events")
                    ok = False
            engine.dispose()
            print(f"figures: delivered {figures['delivered']:,}, unique opens "
                  f"{figures['unique_opens']:,}, actions {figures['actions']:,} "
                  f"(action rate {figures['action_rate']:.2%}), bounces {figures['bounces']:,}, "
                  f"spam reports {figures['spam_reports']:,}, suppressions {suppressed:,}")
            print(f"delivery statuses: {dict(sorted(statuses.items()))}")
            print(f"breakdowns by locale and state (the kept counters), read: {read_ms:.2f} ms; "
                  f"reference: one grouped query for unique opens by locale alone: "
                  f"{grouped_ms:.1f} ms (median of 5)")
            print(f"SUMMARY n={args.n} events={total} copy_rows_s={copy_rate:.0f} "
                  f"ingest_events_s={ingest_rate:.0f} ingest_of_copy={ingest_rate / copy_rate:.3f} "
                  f"apply_s={apply_s:.2f} end_to_end_events_s={end_to_end:.0f} "
                  f"checks={'ok' if ok else 'FAILED'} load={load().replace(' ', '/')}")
        finally:
            procs.stop_all()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
