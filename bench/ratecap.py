"""Benchmark: a campaign with `max_per_minute`, sent by 2 `worker.py` through the sink.

    .venv/bin/python bench/ratecap.py                 # 3,000 mails at 1,200 per minute
    .venv/bin/python bench/ratecap.py 3000 --rate 1200 --window 60 --workers 2

Creates and migrates a scratch PostgreSQL database, COPYs in N confirmed subscribers
(`bench.campaign.seed`), claims a Redis database of its own, starts the SendGrid sink
(recording every mail with its arrival time, port 18331) and the workers, then sends a
newsletter with `max_per_minute` = `--rate` through the real code path
(`drafts.create_draft` + `drafts.act("send")`). With `--global` the cap is the workers'
`SEND_MAX_PER_MINUTE` instead of the campaign's.

Prints the time from "send" to `sent`, the first and last arrival at the sink, and the
most mails that arrived within any `--window` seconds (a sliding window over the sink's
arrival times). Exit status 1 if that is above the cap, if anyone got two mails or none,
or if the send was faster than the cap allows (⌈N / rate⌉ − 1 windows at least).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.campaign import BODY, seed  # noqa: E402
from bench.harness import (  # noqa: E402
    PYTHON,
    Processes,
    get_json,
    load,
    redis_database,
    require_free_port,
    scratch_database,
    sigterm_exits,
    sink_command,
    wait_http,
    worker_env,
)

SINK_PORT = 18331


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=3000, help="subscribers")
    parser.add_argument("--rate", type=int, default=1200, help="the cap per window")
    parser.add_argument("--window", type=float, default=60.0,
                        help="SEND_RATE_WINDOW_SECONDS (60: per minute)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--global", dest="overall", action="store_true",
                        help="cap with SEND_MAX_PER_MINUTE instead of max_per_minute")
    parser.add_argument("--port", type=int, default=SINK_PORT, help="the sink's port")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    args = parser.parse_args()
    sigterm_exits()
    require_free_port(args.port)

    with tempfile.TemporaryDirectory(prefix="bench-ratecap-") as tmp, \
            scratch_database("ratecap") as url, redis_database("ratecap") as redis_url:
        procs = Processes(Path(tmp))
        try:
            seed(url, args.n, 0.0)
            extra = {"SEND_RATE_WINDOW_SECONDS": str(args.window)}
            if args.overall:
                extra["SEND_MAX_PER_MINUTE"] = str(args.rate)
            env = worker_env(url, redis_url, args.port, **extra)
            sink = procs.start("sink", sink_command(args.port), env)
            wait_http(args.port, "/_sink/stats", sink)
            workers = [procs.start(f"worker{k}", [PYTHON, "worker.py", "--name",
                                                 f"ratecap-{os.getpid()}-{k}"], env)
                       for k in range(args.workers)]
            time.sleep(1.0)
            os.environ.update({key: env[key] for key in (
                "DATABASE_URL", "REDIS_URL", "QUEUE_PREFIX", "SECRET_KEY", "SENDGRID_API_KEY",
                "SENDGRID_API_HOST", "PUBLIC_URL", "MAIL_FROM", "ORG_NAME",
                "ORG_POSTAL_ADDRESS", "SEND_RATE_WINDOW_SECONDS")})
            from service import create_app, db
            from service.campaigns.drafts import CampaignIn, act, create_draft
            from service.models import Campaign

            app = create_app()
            with app.app_context():
                session = db.session()
                data = CampaignIn().load({
                    "name": "Warm-up newsletter", "kind": "newsletter",
                    "subject": "News from {{ state }}", "body": BODY, "lists": ["newsletter"],
                    "max_per_minute": None if args.overall else args.rate})
                campaign = create_draft(session, data, "bench")
                session.commit()
                campaign_id = campaign.id
                print(f"load at send: {load()}")
                act(session, campaign, "send", "bench")
                session.commit()
                t_send = time.time()
            status = ""
            while time.time() < t_send + args.timeout:
                with app.app_context():
                    row = db.session().get(Campaign, campaign_id)
                    status = row.status.value if row else "missing"
                    db.session().rollback()
                if status == "sent":
                    break
                for k, worker in enumerate(workers):
                    if worker.poll() is not None:
                        raise RuntimeError(f"worker {k} died:\n{procs.log_tail(f'worker{k}')}")
                time.sleep(0.2)
            t_sent = time.time()
            messages = get_json(args.port, "/_sink/messages")
            print(f"load at end: {load()}")
        finally:
            procs.stop_all()

    times = [m["received_at"] for m in messages]
    received = Counter(m["to"][0]["email"] for m in messages)
    most = most_in_window(times, args.window)
    kind = "SEND_MAX_PER_MINUTE" if args.overall else "max_per_minute"
    print(f"{args.n:,} mails, {kind} {args.rate:,} per {args.window:g} s, "
          f"{args.workers} workers")
    print(f"status {status}: send → sent {t_sent - t_send:.1f} s; first arrival "
          f"+{min(times) - t_send:.1f} s, last +{max(times) - t_send:.1f} s "
          f"(spread {max(times) - min(times):.1f} s)")
    print(f"most in any {args.window:g} s window at the sink: {most:,} (cap {args.rate:,})")
    minimum = (math.ceil(args.n / args.rate) - 1) * args.window
    ok = (status == "sent" and most <= args.rate and len(received) == args.n
          and set(received.values()) == {1} and max(times) - min(times) >= minimum)
    print(f"distinct recipients {len(received):,}, duplicates "
          f"{sum(received.values()) - len(received)}; spread ≥ {minimum:.0f} s: "
          f"{max(times) - min(times) >= minimum}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
