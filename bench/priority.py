"""Benchmark: an alert sent while a big newsletter is mid-send on the same workers.

    .venv/bin/python bench/priority.py [--newsletter 1000000 --alert 100000]

Creates and migrates a scratch PostgreSQL database, COPYs in NEWSLETTER confirmed
subscribers of `newsletter`, the first ALERT of whom are also confirmed on
`action-alerts`, claims a Redis database of its own, starts the SendGrid sink recording
every accepted recipient (`--record FILE --no-content`, port 18345) and 2 `python
worker.py` processes, then, through the real code path (`drafts.create_draft` +
`drafts.act("send")`):

0. two warm-up alerts, each to a quarter of `action-alerts`, (not measured: the workers' first
   campaign starts their render pools and fills their caches);
1. *alone*: sends an alert to `action-alerts` and times it from the commit of "send" to
   the campaign's `sent` (every recipient marked sent right after its 202);
2. *during the newsletter*: sends the newsletter, waits until a share of it
   (`--alert-at`, default 20 %) has been sent, then sends the same alert twice more (new
   campaigns, one after the other) and times them the same way, noting how far the
   newsletter got meanwhile (it must still be sending when the second alert is done);
3. waits for the newsletter to be `sent`, and times the alert alone once more.

The figure is the ratio of the mean alert time during the newsletter to the mean alert time
alone (target ≤ 1.5). All are measured in the same run, with the same workers, sink and
database, and the two alone runs bracket the two during it, so the ratio holds on a shared
machine where absolute times do not.

At the end it reads the sink's record: for each campaign every audience
member must have been received exactly once (0 lost, 0 duplicated, nobody else). Exit
status 1 on any mismatch (not on a missed ratio, which it prints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.campaign import BODY, seed  # noqa: E402

SINK_PORT = 18345
RATIO_TARGET = 1.5
ALERT_BODY = """# Act today

{{ first_name }}, the vote on the clean water bill is **tomorrow** in {{ state }}.

[Call your representative now](https://act.example.org/call).
"""


def seed_alert_list(url: str, n_alert: int) -> None:
    """The first `n_alert` subscribers also confirmed on `action-alerts` (COPY)."""
    import psycopg

    dsn = harness.libpq(url)
    with psycopg.connect(dsn) as conn:
        list_id = conn.execute(
            "SELECT id FROM mailing_lists WHERE slug = 'action-alerts'").fetchone()[0]  # type: ignore[index]
        stamp = "2026-01-02 00:00:00+00"
        with conn.cursor() as cur, cur.copy(
                "COPY subscriptions (subscriber_id, list_id, status, created_at, updated_at, "
                "confirmed_at) FROM STDIN") as copy:
            chunk = 50_000
            for start in range(1, n_alert + 1, chunk):
                copy.write("".join(
                    f"{i}\t{list_id}\tconfirmed\t{stamp}\t{stamp}\t{stamp}\n"
                    for i in range(start, min(n_alert, start + chunk - 1) + 1)))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE subscriptions")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--newsletter", type=int, default=1_000_000,
                        help="newsletter recipients (subscribers seeded)")
    parser.add_argument("--alert", type=int, default=100_000, help="alert recipients")
    parser.add_argument("--alert-at", type=float, default=0.2,
                        help="share of the newsletter sent when the alert is sent")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=SINK_PORT, help="the sink's port")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    args = parser.parse_args()
    if not 0 < args.alert <= args.newsletter:
        parser.error("--alert must be between 1 and --newsletter")
    harness.sigterm_exits()
    harness.require_free_port(args.port)

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp, \
            harness.scratch_database("priority") as url, \
            harness.redis_database("priority") as redis_url:
        procs = harness.Processes(Path(tmp))
        record = Path(tmp) / "sent.jsonl"
        try:
            started = time.perf_counter()
            seed(url, args.newsletter, 0.0)
            seed_alert_list(url, args.alert)
            print(f"{args.newsletter:,} newsletter subscribers, {args.alert:,} of them on "
                  f"action-alerts, seeded in {time.perf_counter() - started:.1f} s", flush=True)
            env = harness.worker_env(url, redis_url, args.port)
            sink = procs.start("sink", harness.sink_command(
                args.port, "--record", str(record), "--no-content"), env)
            harness.wait_http(args.port, "/_sink/stats", sink)
            workers = [procs.start(f"worker{k}", [harness.PYTHON, "worker.py", "--name",
                                                 f"bench-prio-{os.getpid()}-{k}"], env)
                       for k in range(args.workers)]

            os.environ.update({key: env[key] for key in (
                "DATABASE_URL", "REDIS_URL", "QUEUE_PREFIX", "SECRET_KEY", "SENDGRID_API_KEY",
                "SENDGRID_API_HOST", "PUBLIC_URL", "MAIL_FROM", "ORG_NAME",
                "ORG_POSTAL_ADDRESS")})
            from service import create_app, db
            from service.campaigns.drafts import CampaignIn, act, create_draft
            from service.campaigns.sending import counts
            from service.models import Campaign

            app = create_app()
            deadline = time.perf_counter() + args.timeout

            def check_workers() -> None:
                for k, worker in enumerate(workers):
                    if worker.poll() is not None:
                        raise RuntimeError(f"worker {k} died:\n{procs.log_tail(f'worker{k}')}")

            def create(kind: str, name: str, segment: dict[str, Any] | None = None) -> int:
                with app.app_context():
                    session = db.session()
                    data = CampaignIn().load({
                        "name": name, "kind": kind,
                        "subject": ("Act now, {{ first_name }}" if kind == "alert"
                                    else "News from {{ state }}, {{ first_name }}"),
                        "body": ALERT_BODY if kind == "alert" else BODY,
                        "lists": ["action-alerts" if kind == "alert" else "newsletter"],
                        "segment": segment or {}})
                    campaign = create_draft(session, data, "bench")
                    session.commit()
                    return int(campaign.id)

            def send(campaign_id: int) -> float:
                with app.app_context():
                    session = db.session()
                    campaign = session.get(Campaign, campaign_id)
                    assert campaign is not None
                    act(session, campaign, "send", "bench")
                    session.commit()
                return time.perf_counter()

            def state(campaign_id: int) -> tuple[str, dict[str, int]]:
                with app.app_context():
                    session = db.session()
                    row = session.get(Campaign, campaign_id)
                    status = row.status.value if row else "missing"
                    ledger = counts(session, campaign_id)
                    session.rollback()
                return str(status), ledger

            def wait_sent(campaign_id: int) -> float:
                while time.perf_counter() < deadline:
                    if state(campaign_id)[0] == "sent":
                        return time.perf_counter()
                    check_workers()
                    time.sleep(0.02)
                raise RuntimeError(f"campaign {campaign_id} not sent in {args.timeout:.0f} s")

            time.sleep(1.0)
            check_workers()

            def timed_alert(name: str) -> tuple[int, float, str]:
                campaign_id = create("alert", name)
                load_now = harness.load()
                t0 = send(campaign_id)
                return campaign_id, wait_sent(campaign_id) - t0, load_now

            # 0. Warm-up (not measured): the workers' first campaign starts their render
            # pools and fills their caches.
            # Two at once, so that each worker takes one's start job.
            warm_ids = [create("alert", f"Warm-up alert {state}", {"states": [state]})
                        for state in ("CA", "NY")]
            for warm_id in warm_ids:
                send(warm_id)
            for warm_id in warm_ids:
                wait_sent(warm_id)
            newsletter_id = create("newsletter", "Big newsletter")

            # 1. The alert alone; 2. twice during the newsletter (the second right after the
            # first); 3. alone again once the newsletter is sent. Alone before and after
            # brackets whatever else loads the machine meanwhile.
            alone_ids, alone, during_ids, during = [], [], [], []
            cid, took, load_now = timed_alert("Alert alone 1")
            alone_ids.append(cid)
            alone.append(took)
            print(f"alert alone:              {took:8.2f} s  ({args.alert / took:,.0f} "
                  f"recipients/s; load average {load_now})", flush=True)
            t_news = send(newsletter_id)
            mark = int(args.newsletter * args.alert_at)
            while time.perf_counter() < deadline:
                if state(newsletter_id)[1]["sent"] >= mark:
                    break
                check_workers()
                time.sleep(0.02)
            mid_send = True
            for k in (1, 2):
                news_before = state(newsletter_id)[1]["sent"]
                cid, took, load_now = timed_alert(f"Alert during the newsletter {k}")
                during_ids.append(cid)
                during.append(took)
                news_after = state(newsletter_id)
                print(f"alert during newsletter:  {took:8.2f} s  ({args.alert / took:,.0f} "
                      f"recipients/s; load average {load_now}); the newsletter had sent "
                      f"{news_before:,} when the alert was sent, {news_after[1]['sent']:,} "
                      f"when it was done ({news_after[0]})", flush=True)
                mid_send = mid_send and news_after[0] == "sending"
            if not mid_send:
                print("NOT MEASURED: the newsletter ended before the alerts did "
                      "(make --newsletter larger or --alert-at smaller)")
                ok = False
            t_news_done = wait_sent(newsletter_id)
            cid, took, load_now = timed_alert("Alert alone 2")
            alone_ids.append(cid)
            alone.append(took)
            print(f"alert alone again:        {took:8.2f} s  ({args.alert / took:,.0f} "
                  f"recipients/s; load average {load_now})", flush=True)
            load_end = harness.load()
            all_ids = [*warm_ids, newsletter_id, *alone_ids, *during_ids]
            ledgers = {cid: state(cid)[1] for cid in all_ids}
            app.extensions["db"].engine.dispose()
        finally:
            procs.stop_all()

        # Every campaign's audience received exactly once, at the sink.
        received: dict[str, Counter[str]] = {}
        with record.open() as lines:
            for line in lines:
                item: dict[str, Any] = json.loads(line)
                campaign_key = str(item["custom_args"].get("campaign_id"))
                received.setdefault(campaign_key, Counter()).update(
                    r["email"] for r in item["to"])
        def members(size: int, every: int = 1) -> set[str]:
            return {f"reader{i}@example{i % 97}.org" for i in range(1, size + 1)
                    if i % every == 0}

        alert_audience = members(args.alert)
        quarter = members(args.alert, 4)  # subscriber i is in STATES[i % 4]: CA, NY, …
        audiences = {warm_ids[0]: quarter, warm_ids[1]: {
                         f"reader{i}@example{i % 97}.org" for i in range(1, args.alert + 1)
                         if i % 4 == 1},
                     newsletter_id: members(args.newsletter),
                     **{cid: alert_audience for cid in alone_ids + during_ids}}
        ratio = (sum(during) / len(during)) / (sum(alone) / len(alone))
        print(f"alert to {args.alert:,} recipients while a {args.newsletter:,}-recipient "
              f"newsletter sends, {args.workers} worker.py, batches of 1000, sink over HTTP "
              f"(recording); newsletter send -> sent {t_news_done - t_news:.1f} s; load "
              f"average at the end {load_end}")
        print(f"alert alone: {', '.join(f'{t:.2f}' for t in alone)} s; during the newsletter: "
              f"{', '.join(f'{t:.2f}' for t in during)} s")
        print(f"alert during / alert alone (means): {ratio:.2f}  (target ≤ {RATIO_TARGET}: "
              f"{'met' if ratio <= RATIO_TARGET and mid_send else 'MISSED'})")
        for cid, expected in audiences.items():
            size = len(expected)
            got = received.get(str(cid), Counter())
            lost = len(expected - set(got))
            strangers = len(set(got) - expected)
            duplicated = sum(n - 1 for n in got.values())
            ledger = ledgers[cid]
            fine = (lost == duplicated == strangers == 0 and ledger["sent"] == size)
            print(f"campaign {cid}: audience {size:,}; lost {lost}, duplicated {duplicated}, "
                  f"not in the audience {strangers}; ledger {ledger}"
                  + ("" if fine else "  MISMATCH"))
            ok = ok and fine
        print("OK: every audience received exactly once" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
