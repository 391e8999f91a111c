"""Benchmark: signed Event Webhook batches into gunicorn on PostgreSQL.

    .venv/bin/python bench/webhook.py [--batches 20 --events 5000 --clients 2]

Creates and migrates a fresh PostgreSQL database (server from BENCH_DATABASE_URL or
TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres), starts
`gunicorn -w 2 'service:create_app()'` on 127.0.0.1:18300 with a key pair made here, and
posts the batches from concurrent clients: once new (each body stored as one batch) and
once again (the same bodies, still waiting: nothing stored). Effects are queued to Redis
(a queue prefix of its own, emptied afterwards) and not run, so the figure is ingestion.
In the same run, the same bodies go to a plain WSGI app (reads the body, answers 200)
under the same gunicorn settings on port 18301: the floor set by HTTP + gunicorn alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP_PORT, PLAIN_PORT = 18300, 18301


def trivial_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The reference: read the whole body, answer 200 (no parsing, no signature, no DB)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def make_batches(n_batches: int, per_batch: int) -> list[list[dict[str, Any]]]:
    kinds = ["processed", "delivered", "open", "click", "delivered", "open"]
    now = int(time.time())
    batches = []
    for b in range(n_batches):
        batch = []
        for i in range(per_batch):
            n = b * per_batch + i
            event = {
                "email": f"reader{n % 50_000}@example.org",
                "timestamp": now - 3600 + n % 3600,
                "event": kinds[n % len(kinds)],
                "sg_event_id": f"bench-{n}-{secrets.token_hex(6)}",
                "sg_message_id": f"msg{n // 3}.filterdrecv-1234-5678",
                "smtp-id": f"<msg{n // 3}@example.org>",
                "category": ["alert"],
                "campaign_id": str(1 + n % 3),
                "subscriber_id": str(1 + n % 50_000),
                "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
                "ip": "203.0.113.7",
            }
            if event["event"] == "click":
                event["url"] = f"https://example.org/act/{n % 5}"
            batch.append(event)
        batches.append(batch)
    return batches


def post_all(port: int, bodies: list[tuple[bytes, dict[str, str]]], clients: int
             ) -> tuple[float, list[dict[str, Any]]]:
    from bench.harness import post_json

    def post(item: tuple[bytes, dict[str, str]]) -> dict[str, Any]:
        body, headers = item
        return post_json(port, "/webhooks/sendgrid", body, headers, timeout=120)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(post, bodies))
    return time.perf_counter() - started, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from redis import Redis
    from rq import Queue
    from sqlalchemy import create_engine, text

    from bench.harness import scratch_database, wait_http
    from sendgrid_sink.signing import new_private_key, public_key_b64, signature_headers

    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-webhook-{os.getpid()}-"
    procs: list[subprocess.Popen[bytes]] = []
    with scratch_database("webhook") as url:
        try:
            key = new_private_key()
            public = public_key_b64(key)
            env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": secrets.token_hex(16),
                   "SENDGRID_WEBHOOK_PUBLIC_KEY": public, "REDIS_URL": redis_url,
                   "QUEUE_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
            gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "-w", str(args.workers),
                        "--log-level", "warning", "--timeout", "120"]
            procs.append(subprocess.Popen(
                [*gunicorn, "-b", f"127.0.0.1:{APP_PORT}", "service:create_app()"],
                env=env, cwd=ROOT))
            procs.append(subprocess.Popen(
                [*gunicorn, "-b", f"127.0.0.1:{PLAIN_PORT}", "bench.webhook:trivial_app"],
                env=env, cwd=ROOT))
            wait_http(APP_PORT, "/healthz", procs[0], timeout=30)
            wait_http(PLAIN_PORT, "/", procs[1], timeout=30)

            batches = make_batches(args.batches, args.events)
            total = args.batches * args.events

            def signed() -> list[tuple[bytes, dict[str, str]]]:
                out = []
                for batch in batches:
                    body = json.dumps(batch).encode() + b"\r\n"
                    out.append((body, {"Content-Type": "application/json",
                                       **signature_headers(key, body)}))
                return out

            bodies = signed()
            size = sum(len(b) for b, _ in bodies) / len(bodies) / 1024
            new_s, new_results = post_all(APP_PORT, bodies, args.clients)
            dup_s, dup_results = post_all(APP_PORT, signed(), args.clients)
            plain_s, _ = post_all(PLAIN_PORT, bodies, args.clients)

            stored = sum(r["queued"] for r in new_results)
            duplicates = sum(r["received"] - r["queued"] for r in dup_results)
            with create_engine(url).connect() as conn:
                rows = conn.execute(text(
                    "SELECT coalesce(sum(events), 0) FROM webhook_batches")).scalar_one()
            assert stored == rows == total, (stored, rows, total)
            assert duplicates == total, duplicates
            print(f"{args.batches} batches x {args.events} events ({size:.0f} KB each), "
                  f"{args.clients} clients, gunicorn -w {args.workers}, PostgreSQL")
            print(f"webhook, new batches:      {total / new_s:>9,.0f} events/s  ({new_s:.2f} s)")
            print(f"webhook, same bodies again: {total / dup_s:>8,.0f} events/s  ({dup_s:.2f} s)")
            print(f"plain WSGI, same bodies:   {total / plain_s:>9,.0f} events/s  "
                  f"({plain_s:.2f} s)")
            print(f"events in stored batches: {rows}, in bodies refused as waiting already: "
                  f"{duplicates}")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            redis = Redis.from_url(redis_url)
            Queue(f"{prefix}default", connection=redis).empty()
            redis.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
