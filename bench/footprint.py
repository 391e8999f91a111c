"""Per-recipient costs of a send on the shared servers: WAL bytes, Redis commands, disk.

    .venv/bin/python bench/footprint.py [N]        # default 100,000

What `docs/scaling.md` extrapolates from. Creates and migrates a scratch PostgreSQL
database, COPYs in N confirmed subscribers, claims a Redis database, starts the sink
(`--count-only`, port 18347) and 2 `python worker.py`, and sends one newsletter through the
real code path (`drafts.act("send")`). Around the send (from the commit of "send" to the
campaign's `sent`) it reads:

- PostgreSQL: `pg_current_wal_lsn()` before and after (WAL bytes), and the scratch
  database's `xact_commit` and `tup_inserted/updated` from `pg_stat_database`;
- Redis: `INFO commandstats` before and after (calls per command);
- after the send: `pg_total_relation_size` of `deliveries` and `batches` (table, indexes,
  TOAST) divided by their rows, and the heap alone;
- then the WAL of `--signups` public signups (new addresses, one list) posted through the
  app's test client in this process, after a checkpoint.

WAL and `INFO commandstats` count the whole server, not one database: run it on servers
nobody else uses (see docs/scaling.md for the throw-away servers the figures came from).
It also measures the same counters over an idle window as long as the send (plus the
1.5 s it waits for PostgreSQL's statistics), with the
workers running, right before it, and prints the send's figures with that background
subtracted, next to the raw ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.campaign import BODY, seed  # noqa: E402

SINK_PORT = 18347


def commandstats(redis: object) -> Counter[str]:
    stats = redis.info("commandstats")  # type: ignore[attr-defined]
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="recipients")
    parser.add_argument("--port", type=int, default=SINK_PORT, help="the sink's port")
    parser.add_argument("--signups", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    harness.sigterm_exits()
    harness.require_free_port(args.port)

    from redis import Redis
    from sqlalchemy import create_engine, text

    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp, \
            harness.scratch_database("footprint") as url, \
            harness.redis_database("footprint") as redis_url:
        procs = harness.Processes(Path(tmp))
        redis = Redis.from_url(redis_url)
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        app = None
        try:
            seed(url, args.n, 0.0)
            env = harness.worker_env(url, redis_url, args.port,
                                     SIGNUP_RATE_LIMIT="100000000/minute")
            sink = procs.start("sink", harness.sink_command(args.port, "--count-only"), env)
            harness.wait_http(args.port, "/_sink/stats", sink)
            for k in range(2):
                procs.start(f"worker{k}", [harness.PYTHON, "worker.py", "--name",
                                           f"bench-footprint-{os.getpid()}-{k}"], env)
            os.environ.update({key: env[key] for key in (
                "DATABASE_URL", "REDIS_URL", "QUEUE_PREFIX", "SECRET_KEY", "SENDGRID_API_KEY",
                "SENDGRID_API_HOST", "PUBLIC_URL", "MAIL_FROM", "ORG_NAME",
                "ORG_POSTAL_ADDRESS", "SIGNUP_RATE_LIMIT")})
            from service import create_app, db
            from service.campaigns.drafts import CampaignIn, act, create_draft
            from service.models import Campaign

            app = create_app()

            def pg_counters() -> tuple[int, int, int, int]:
                with engine.connect() as conn:
                    lsn = conn.execute(text(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")).scalar_one()
                    commits, inserted, updated = conn.execute(text(
                        "SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database "
                        "WHERE datname = current_database()")).one()
                return int(lsn), int(commits), int(inserted), int(updated)

            def status(campaign_id: int) -> str:
                with app.app_context():
                    row = db.session().get(Campaign, campaign_id)
                    value = row.status.value if row else "missing"
                    db.session().rollback()
                return str(value)

            with app.app_context():
                session = db.session()
                campaign = create_draft(session, CampaignIn().load({
                    "name": "Footprint newsletter", "kind": "newsletter",
                    "subject": "News from {{ state }}, {{ first_name }}", "body": BODY,
                    "lists": ["newsletter"]}), "bench")
                session.commit()
                campaign_id = campaign.id
            time.sleep(3.0)  # the workers' start-up writes are over

            # The send.
            with engine.connect() as conn:
                conn.execute(text("CHECKPOINT"))  # every send starts after a checkpoint
            pg0, redis0, load0 = pg_counters(), commandstats(redis), harness.load()
            with app.app_context():
                session = db.session()
                row = session.get(Campaign, campaign_id)
                assert row is not None
                act(session, row, "send", "bench")
                session.commit()
            t0 = time.perf_counter()
            deadline = t0 + args.timeout
            while status(campaign_id) != "sent":
                if time.perf_counter() > deadline:
                    raise RuntimeError("campaign not sent in time")
                time.sleep(0.05)
            took = time.perf_counter() - t0
            time.sleep(1.5)  # backends report their statistics at most once a second
            pg1, redis1 = pg_counters(), commandstats(redis)

            # The background: the same counters over an idle window as long as the send.
            pg2, redis2 = pg_counters(), commandstats(redis)
            time.sleep(took + 1.5)
            pg3, redis3 = pg_counters(), commandstats(redis)

            with engine.connect() as conn:
                sizes = conn.execute(text("""
                    SELECT (SELECT count(*) FROM deliveries), pg_total_relation_size('deliveries'),
                           pg_relation_size('deliveries'), pg_indexes_size('deliveries'),
                           (SELECT count(*) FROM batches), pg_total_relation_size('batches')
                """)).one()
                conn.execute(text("VACUUM deliveries"))
                after_vacuum = conn.execute(text(
                    "SELECT pg_total_relation_size('deliveries')")).scalar_one()

            # The WAL of signups (new addresses, one list each).
            client = app.test_client()
            with engine.connect() as conn:
                conn.execute(text("CHECKPOINT"))
            wal_signup0 = pg_counters()[0]
            for i in range(args.signups):
                answer = client.post("/api/v1/subscriptions", json={
                    "email": f"footprint{i}@example.org", "lists": ["newsletter"],
                    "first_name": "Ana", "last_name": "García", "postal_code": "94110"})
                assert answer.status_code == 202, answer.get_data(as_text=True)
            wal_signups = pg_counters()[0] - wal_signup0
            app.extensions["db"].engine.dispose()
        finally:
            procs.stop_all()
            redis.close()
            engine.dispose()

    n = args.n
    batches = sizes[4]
    wal, wal_idle = pg1[0] - pg0[0], pg3[0] - pg2[0]
    print(f"footprint of a {n:,}-recipient newsletter ({batches:,} batches of 1000), 2 "
          f"worker.py, sink --count-only; send -> sent {took:.1f} s; load average {load0}")
    print(f"WAL: {wal:,} bytes during the send ({wal / n:,.0f} bytes/recipient); idle window "
          f"of the same length: {wal_idle:,} bytes; net {(wal - wal_idle) / n:,.0f} "
          f"bytes/recipient")
    commits = pg1[1] - pg0[1] - (pg3[1] - pg2[1])
    print(f"PostgreSQL (this database, net of idle): {commits:,} commits "
          f"({commits / batches:.1f} per batch), {pg1[2] - pg0[2]:,} rows inserted, "
          f"{pg1[3] - pg0[3]:,} rows updated")
    send_ops, idle_ops = redis1 - redis0, redis3 - redis2
    net = Counter({k: send_ops[k] - idle_ops.get(k, 0) for k in send_ops})
    total, total_idle = sum(send_ops.values()), sum(idle_ops.values())
    print(f"Redis: {total:,} commands during the send, {total_idle:,} in the idle window; net "
          f"{(total - total_idle) / batches:.1f} per batch")
    print("  per batch, net: " + ", ".join(
        f"{k} {v / batches:.1f}" for k, v in net.most_common() if v / batches >= 0.05))
    rows, total_size, heap, indexes, _, batch_size = sizes
    print(f"deliveries: {rows:,} rows, {total_size / 2**20:,.1f} MiB in all "
          f"({total_size / rows:,.0f} bytes/recipient: heap {heap / rows:,.0f}, indexes "
          f"{indexes / rows:,.0f}); after VACUUM {after_vacuum / rows:,.0f} bytes/recipient; "
          f"batches: {batch_size / batches:,.0f} bytes/batch")
    if args.signups:
        print(f"signups: {wal_signups / args.signups:,.0f} bytes of WAL per signup "
              f"({args.signups:,} new addresses, one list, after a checkpoint)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
