"""The admin's progress poll on a campaign of a million deliveries.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python bench/campaign_progress.py [DELIVERIES]

Creates a scratch PostgreSQL database, migrates it and fills one campaign half-way
through sending: DELIVERIES deliveries (default 1,000,000) in batches of 1,000, the
first half sent by batches that finished over the last ten minutes, the rest queued.
Times (median of 5, ms) what one poll of `/admin/campaigns/<id>/progress` runs —
`campaign_progress` as a whole, and its two parts — and, as the reference, the rate
measured by scanning the deliveries' `sent_at` instead of the finished batches.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from bench.harness import scratch_database  # noqa: E402
from service import create_app, db  # noqa: E402
from service.campaigns.progress import (  # noqa: E402
    RATE_WINDOW,
    campaign_progress,
    recent_sent_query,
)
from service.campaigns.sending import counts  # noqa: E402
from service.db import utcnow  # noqa: E402
from service.models import Campaign, Delivery, DeliveryStatus  # noqa: E402

BATCH = 1000


def fill(url: str, deliveries: int) -> None:
    batches = deliveries // BATCH
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO campaigns (id, name, kind, subject, preheader, body, format, variants,
                segment, source_code, status, status_reason, started_at, created_by,
                created_at, updated_at)
            VALUES (1, 'bench', 'newsletter', 's', '', 'b', 'markdown', '{}', '{}', '',
                'sending', '', now() - interval '10 minutes', 'bench', now(), now())"""))
        # The first half of the batches finished over the last 10 minutes, in order.
        conn.execute(text(f"""
            INSERT INTO batches (id, campaign_id, seq, status, attempts, claimed_at,
                finished_at, message_id, error, size, sent)
            SELECT s, 1, s, CASE WHEN s < {batches // 2} THEN 'done' ELSE 'queued' END, 0,
                   NULL,
                   CASE WHEN s < {batches // 2}
                        THEN now() - ({batches // 2} - s) * (600.0 / {batches // 2})
                                     * interval '1 second' END,
                   '', '', {BATCH}, CASE WHEN s < {batches // 2} THEN {BATCH} ELSE 0 END
            FROM generate_series(0, {batches - 1}) AS s"""))
        conn.execute(text(f"""
            INSERT INTO deliveries (campaign_id, batch_id, subscriber_id, status, reason,
                message_id, sent_at, event_status)
            SELECT 1, b.id, NULL, CASE WHEN b.status = 'done' THEN 'sent' ELSE 'queued' END,
                   '', '', b.finished_at, ''
            FROM batches b, generate_series(1, {BATCH}) AS i"""))
        conn.execute(text("ANALYZE"))
    engine.dispose()


def median_ms(run: Callable[[], Any], session: Any) -> tuple[float, Any]:
    samples, value = [], None
    for _ in range(5):
        start = time.perf_counter()
        value = run()
        samples.append(time.perf_counter() - start)
        session.rollback()
    return statistics.median(samples) * 1000, value


def main() -> None:
    deliveries = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with scratch_database("campaign_progress") as url:
        started = time.perf_counter()
        fill(url, deliveries)
        print(f"{deliveries:,} deliveries filled in {time.perf_counter() - started:.0f}s; "
              f"load average {os.getloadavg()}")
        app = create_app({"testing": True, "secret_key": "bench", "database_url": url})
        with app.app_context():
            session = db.session()
            campaign = session.get(Campaign, 1)
            assert campaign is not None
            since = utcnow() - RATE_WINDOW
            by_delivery = (
                select(func.count()).select_from(Delivery)
                .where(Delivery.campaign_id == 1, Delivery.status == DeliveryStatus.sent,
                       Delivery.sent_at >= since)
            )
            rows = [
                ("campaign_progress (one poll)",
                 lambda: campaign_progress(session, session.get(Campaign, 1)).as_dict()),
                ("  counts (sending.counts)", lambda: counts(session, 1)),
                ("  rate: finished batches", lambda: session.scalar(
                    recent_sent_query(1, since))),
                ("  reference rate: deliveries.sent_at",
                 lambda: session.scalar(by_delivery)),
            ]
            print(f"{'query (median of 5)':40} {'ms':>8}  result")
            for label, run in rows:
                ms, value = median_ms(run, session)
                print(f"{label:40} {ms:8.1f}  {value}")
            print(f"load average {os.getloadavg()}")
        app.extensions["db"].engine.dispose()


if __name__ == "__main__":
    main()
