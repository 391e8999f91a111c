"""Crash safety: SIGKILL workers (whole process groups) again and again during a send.

    .venv/bin/python bench/chaos.py [N] [--kills 10 --seed 1]      # default N = 100,000

Creates and migrates a scratch PostgreSQL database, COPYs in N confirmed subscribers,
claims a Redis database of its own, starts the SendGrid sink recording every accepted
recipient to a JSON-lines file (`--record FILE --no-content`, port 18340) and 2 `python
worker.py` (CAMPAIGN_LEASE_SECONDS at its default, 60: a dead worker is found by its
batch's advisory lock, not the lease), and sends one newsletter through the real code path
(`drafts.act("send")`). From the first 202 on, it KILLs (SIGKILL to the process group: the
worker and its RQ scheduler child, as a lost machine or an OOM-killed container would) a
randomly chosen worker at random moments (`--kills` times, 0.5–2.5 s apart), restarting it
at once each time. A kill waits until both workers serve (are registered with RQ), so each
kill leaves one worker serving: on a loaded machine a restarted worker takes seconds to
start, and killing the other meanwhile would measure start-up times, not recovery. Right
before each kill it reads which batch the worker holds (RQ's `current_job` of the worker →
`al-batch-<id>`) and how many of that batch's recipients are not yet marked sent: the most
that kill can duplicate. A job the worker had taken but whose batch it had not claimed yet
counts as held too (its recipients wait for that job as well), with nothing unsent in
flight.

Kill-to-resume: from the kill to the first recipient of the held batch marked after it
(right after that recipient's 202), or the batch done — what the kill cost that batch's
recipients in delay. Target ≤ 10 s.

When the campaign is `sent`, it prints:

- lost: audience members the sink never recorded;
- duplicated: recipients recorded more than once (extra copies);
- the in-flight bound: batches (and unsent recipients) held at each kill, whose sum
  bounds the duplicates; the ledger's counts;
- kill-to-resume, max and median, over the kills that held a batch.

Exit status 1 if anyone is lost, duplicates exceed the bound, or a kill-to-resume
exceeds 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.campaign import BODY, seed  # noqa: E402

SINK_PORT = 18340
_BATCH_JOB = re.compile(r"^al-batch-(\d+)")
RESUME_TARGET_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="subscribers")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-gap", type=float, default=0.5, help="seconds between kills")
    parser.add_argument("--max-gap", type=float, default=2.5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--lease", type=int, default=60, help="CAMPAIGN_LEASE_SECONDS")
    parser.add_argument("--slow-ms", type=int, default=0,
                        help="the sink answers every request this much later (small smoke runs)")
    parser.add_argument("--port", type=int, default=SINK_PORT, help="the sink's port")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    harness.sigterm_exits()
    harness.require_free_port(args.port)
    rng = random.Random(args.seed)

    from redis import Redis
    from sqlalchemy import create_engine, text

    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp, \
            harness.scratch_database("chaos") as url, \
            harness.redis_database("chaos") as redis_url:
        procs = harness.Processes(Path(tmp))
        record = Path(tmp) / "sent.jsonl"
        redis = Redis.from_url(redis_url)
        engine = create_engine(url)
        try:
            seed(url, args.n, 0.0)
            env = harness.worker_env(url, redis_url, args.port,
                                     CAMPAIGN_LEASE_SECONDS=str(args.lease),
                                     CAMPAIGN_BATCH_SIZE=str(args.batch_size))
            extra = ["--record", str(record), "--no-content"]
            if args.slow_ms:
                extra += ["--fault-rate", "1", "--faults", "slow",
                          "--slow-seconds", str(args.slow_ms / 1000)]
            sink = procs.start("sink", harness.sink_command(args.port, *extra), env)
            harness.wait_http(args.port, "/_sink/stats", sink)

            generation = 0

            def start_worker(slot: int) -> tuple[subprocess.Popen[bytes], str]:
                nonlocal generation
                generation += 1
                name = f"bench-chaos-{os.getpid()}-{slot}-{generation}"
                proc = procs.start(f"worker{slot}",
                                   [harness.PYTHON, "worker.py", "--name", name], env)
                return proc, name

            workers = [start_worker(slot) for slot in range(2)]

            os.environ.update({key: env[key] for key in (
                "DATABASE_URL", "REDIS_URL", "QUEUE_PREFIX", "SECRET_KEY", "SENDGRID_API_KEY",
                "SENDGRID_API_HOST", "PUBLIC_URL", "MAIL_FROM", "ORG_NAME",
                "ORG_POSTAL_ADDRESS", "CAMPAIGN_LEASE_SECONDS", "CAMPAIGN_BATCH_SIZE")})
            from service import create_app, db
            from service.campaigns.drafts import CampaignIn, act, create_draft
            from service.campaigns.sending import counts
            from service.models import Campaign

            app = create_app()
            with app.app_context():
                session = db.session()
                campaign = create_draft(session, CampaignIn().load({
                    "name": "Chaos newsletter", "kind": "newsletter",
                    "subject": "News from {{ state }}", "body": BODY,
                    "lists": ["newsletter"]}), "bench")
                session.commit()
                campaign_id = campaign.id
                load_at_send = harness.load()
                act(session, campaign, "send", "bench")
                session.commit()
            t_send = time.perf_counter()
            deadline = t_send + args.timeout

            def status() -> str:
                with app.app_context():
                    row = db.session().get(Campaign, campaign_id)
                    value = row.status.value if row else "missing"
                    db.session().rollback()
                return str(value)

            def ledger_now() -> dict[str, int]:
                with app.app_context():
                    value = counts(db.session(), campaign_id)
                    db.session().rollback()
                return value

            while harness.get_json(args.port, "/_sink/stats")["personalizations"] == 0:
                if time.perf_counter() > deadline:
                    raise RuntimeError("nothing was sent")
                time.sleep(0.02)

            kills: list[dict[str, object]] = []
            # kill number → (held batch, the moment of the kill, its rows done by then)
            waiting: dict[int, tuple[int, float, int]] = {}
            polled_at = 0.0

            def batch_progress(conn: object, batch: int) -> tuple[str, int]:
                state, done = conn.execute(text(  # type: ignore[attr-defined]
                    "SELECT status, sent + failed + skipped FROM batches WHERE id = :b"),
                    {"b": batch}).one()
                return str(state), int(done)

            def poll_resumes() -> None:
                """Each held batch resumes at its first row marked after the kill."""
                nonlocal polled_at
                if not waiting or time.perf_counter() - polled_at < 0.05:
                    return
                polled_at = time.perf_counter()
                with engine.connect() as conn:
                    for k, (batch, killed_at, done_then) in list(waiting.items()):
                        state, done = batch_progress(conn, batch)
                        if state == "done" or done > done_then:
                            kills[k]["resumed"] = round(polled_at - killed_at, 2)
                            del waiting[k]

            next_kill = time.perf_counter() + rng.uniform(args.min_gap, args.max_gap)
            while len(kills) < args.kills and status() == "sending":
                poll_resumes()
                if time.perf_counter() < next_kill:
                    time.sleep(0.01)
                    continue
                serving = [n for n in range(2) if redis.exists(f"rq:worker:{workers[n][1]}")]
                if len(serving) < 2:  # the last one killed is not serving again yet
                    time.sleep(0.02)
                    continue
                slot = rng.randrange(2)
                proc, name = workers[slot]
                job = redis.hget(f"rq:worker:{name}", "current_job")
                match = _BATCH_JOB.match(job.decode()) if job else None
                held, unsent = None, 0
                with engine.connect() as conn:
                    if match:
                        held = int(match.group(1))
                        state, unsent = conn.execute(text(
                            "SELECT b.status, (SELECT count(*) FROM deliveries d "
                            "WHERE d.batch_id = b.id AND d.status = 'queued') "
                            "FROM batches b WHERE b.id = :b"), {"b": held}).one()
                        if state == "queued":
                            unsent = 0  # taken, not claimed: its job dies with the worker
                        elif state != "sending":
                            held, unsent = None, 0
                    sending_now = conn.execute(text(
                        "SELECT count(*) FROM batches WHERE campaign_id = :c "
                        "AND status = 'sending'"), {"c": campaign_id}).scalar_one()
                harness.Processes.kill_group(proc)
                killed_at = time.perf_counter()
                proc.wait()
                procs.procs.remove(proc)
                if held is not None:
                    with engine.connect() as conn:
                        state, done_then = batch_progress(conn, held)
                    if state != "done":
                        waiting[len(kills)] = (held, killed_at, done_then)
                sent_so_far = harness.get_json(args.port, "/_sink/stats")["personalizations"]
                kills.append({"at": round(killed_at - t_send, 2), "slot": slot,
                              "batch": held, "unsent": unsent, "sending": sending_now,
                              "sink": sent_so_far, "resumed": None})
                workers[slot] = start_worker(slot)
                print(f"  kill {len(kills)} at {kills[-1]['at']} s: worker {slot}, batch "
                      f"{held or '-'} ({unsent} unsent)", flush=True)
                next_kill = time.perf_counter() + rng.uniform(args.min_gap, args.max_gap)

            last_report = time.perf_counter()
            while status() != "sent" or waiting:
                poll_resumes()
                if time.perf_counter() > deadline:
                    tails = "\n".join(procs.log_tail(f"worker{slot}") for slot in range(2))
                    raise RuntimeError(f"campaign not sent after {args.timeout:.0f} s; "
                                       f"ledger {ledger_now()}\n{tails}")
                if time.perf_counter() - last_report > 10:
                    last_report = time.perf_counter()
                    print(f"  ... {last_report - t_send:.0f} s: ledger {ledger_now()}",
                          flush=True)
                time.sleep(0.05)
            took = time.perf_counter() - t_send
            load_at_end = harness.load()
            ledger = ledger_now()
            app.extensions["db"].engine.dispose()
        finally:
            procs.stop_all()
            redis.close()
            engine.dispose()

        received: Counter[str] = Counter()
        with record.open() as lines:
            for line in lines:
                item = json.loads(line)
                if item["custom_args"].get("campaign_id") == str(campaign_id):
                    received.update(r["email"] for r in item["to"])
        audience = {f"reader{i}@example{i % 97}.org" for i in range(1, args.n + 1)}
        lost = len(audience - set(received))
        strangers = len(set(received) - audience)
        duplicated = sum(n - 1 for n in received.values())
        bound = sum(int(str(k["unsent"])) for k in kills)

        print(f"chaos: {args.n:,} recipients, batches of {args.batch_size}, 2 worker.py, "
              f"lease {args.lease} s, {len(kills)} SIGKILLs of a worker's process group "
              f"(seed {args.seed}); sent in {took:.1f} s; load average at send "
              f"{load_at_send}, at the end {load_at_end}")
        print(f"{'kill':>4} {'at s':>6} {'worker':>6} {'batch held':>10} {'unsent in it':>12} "
              f"{'batches sending':>15} {'sink so far':>11} {'resumed after s':>15}")
        for k, kill in enumerate(kills, 1):
            resumed = kill["resumed"] if kill["resumed"] is not None else "-"
            print(f"{k:>4} {kill['at']:>6} {kill['slot']:>6} {kill['batch'] or '-':>10} "
                  f"{kill['unsent']:>12} {kill['sending']:>15} {kill['sink']:>11,} "
                  f"{resumed:>15}")
        held = sum(1 for k in kills if k["batch"])
        resumes = [float(str(k["resumed"])) for k in kills if k["resumed"] is not None]
        if resumes:
            print(f"kill-to-resume: max {max(resumes):.2f} s, median "
                  f"{statistics.median(resumes):.2f} s over {len(resumes)} kills that held a "
                  f"batch (target ≤ {RESUME_TARGET_SECONDS:.0f} s)")
        else:
            print("kill-to-resume: no kill held a batch")
        print(f"in flight at the kills: {held} batches held by the killed worker, "
              f"{bound:,} of their recipients not yet marked sent (the duplicate bound)")
        print(f"ledger {ledger}")
        print(f"lost: {lost:,}   duplicated: {duplicated:,}   (recorded by the sink: "
              f"{sum(received.values()):,} for {len(received):,} addresses; not in the "
              f"audience: {strangers})")
        prompt = all(r <= RESUME_TARGET_SECONDS for r in resumes)
        ok = (lost == 0 and strangers == 0 and duplicated <= bound
              and ledger["sent"] == args.n and prompt)
        print("OK: nobody lost, duplicates within the in-flight bound, every held batch "
              f"resumed within {RESUME_TARGET_SECONDS:.0f} s" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
