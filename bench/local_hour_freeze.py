"""Benchmark: the freeze of a local-hour campaign against a plain one, on PostgreSQL.

    .venv/bin/python bench/local_hour_freeze.py [N] [--rounds 3]   # default 1,000,000

Creates and migrates a scratch database, COPYs in N subscribers in six US time zones
(every 50th with none; `bench.campaign.seed`), then times `sending.freeze_audience` (the
INSERT … SELECT that writes the batches and the deliveries, plus, for the local-hour
campaign, the per-zone `not_before` updates) for a plain campaign and for one with
`send_at_local`, alternately, each in a transaction that is rolled back. Prints each
timing and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.campaign import seed  # noqa: E402
from bench.harness import load, scratch_database, sigterm_exits  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="subscribers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sigterm_exits()
    with scratch_database("lhfreeze") as url:
        seed(url, args.n, 0.0, zones=True)
        os.environ.update({"DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-used-only-by-"
                           "the-benchmarks", "PUBLIC_URL": "https://lists.example.org",
                           "ORG_POSTAL_ADDRESS": "1 Main St"})
        os.environ.pop("REDIS_URL", None)
        from service import create_app, db
        from service.campaigns.drafts import CampaignIn, create_draft
        from service.campaigns.sending import freeze_audience, schedule

        app = create_app()
        timings: dict[str, list[float]] = {"plain": [], "local": []}
        with app.app_context():
            session = db.session()
            ids = {}
            for mode in timings:
                data = CampaignIn().load({"name": mode, "kind": "newsletter", "subject": "S",
                                          "body": "B", "lists": ["newsletter"]})
                campaign = create_draft(session, data, "bench")
                campaign.send_at_local = "2027-01-12T09:00" if mode == "local" else ""
                ids[mode] = campaign.id
            session.commit()
            print(f"{args.n:,} subscribers; load {load()}")
            from service.models import Campaign

            for round_ in range(args.rounds):
                for mode in ("plain", "local") if round_ % 2 == 0 else ("local", "plain"):
                    campaign = session.get(Campaign, ids[mode])
                    assert campaign is not None
                    started = time.perf_counter()
                    total = freeze_audience(session, campaign, 1000)
                    took = time.perf_counter() - started
                    timings[mode].append(took)
                    extra = f", schedule {schedule(session, campaign)}" if mode == "local" \
                        and round_ == 0 else ""
                    print(f"round {round_ + 1} {mode:5}: {took:.2f} s for {total:,}{extra}")
                    session.rollback()
            print(f"load {load()}")
        for mode, values in timings.items():
            print(f"median {mode}: {statistics.median(values):.2f} s")
        ratio = statistics.median(timings["local"]) / statistics.median(timings["plain"])
        print(f"local / plain: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
