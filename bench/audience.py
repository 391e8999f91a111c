"""Campaign audience count on a large table (the editor's live count; target ≤ 500 ms).

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python bench/audience.py [ROWS]

Creates a scratch PostgreSQL database, migrates it and fills ROWS subscribers (default
1,000,000) the way bench/admin_search.py does (a third confirmed on `newsletter`, states
CA/NY/TX/IL, a fifth Spanish), puts a tenth of the confirmed ones on `action-alerts` too and
suppresses 1% of the addresses. It then times `service.campaigns.audience.audience_count`
(median of 5) for typical targets. The reference in the same run is the cheapest possible
count: `SELECT count(*) FROM subscriptions WHERE list_id = … AND status = 'confirmed'`,
which ignores segments, suppressions and people on two lists.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text  # noqa: E402

from bench.admin_search import fill  # noqa: E402
from bench.harness import scratch_database  # noqa: E402
from service import create_app, db  # noqa: E402
from service.campaigns.audience import audience_count  # noqa: E402
from service.models import Campaign, CampaignKind, MailingList  # noqa: E402

CASES: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "newsletter, everyone": (["newsletter"], {}),
    "newsletter + alerts (each once)": (["newsletter", "action-alerts"], {}),
    "alerts, state TX": (["action-alerts"], {"states": ["TX"]}),
    "newsletter, CA + NY, Spanish": (["newsletter"], {"states": ["CA", "NY"], "locales": ["es"]}),
    "newsletter, postal prefix 9": (["newsletter"], {"postal_prefixes": ["9"]}),
}


def extend(url: str) -> None:
    """Second list, suppressions and postal codes on top of the admin_search fill."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET postal_code = lpad((id % 99999)::text, 5, '0')"))
        conn.execute(text("""
            INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
            SELECT s.subscriber_id, l.id, 'confirmed', now(), now()
            FROM subscriptions s, mailing_lists l
            WHERE l.slug = 'action-alerts' AND s.status = 'confirmed'
              AND s.subscriber_id % 10 = 0"""))
        conn.execute(text("""
            INSERT INTO suppressions (email, email_hash, reason, source, note, created_at)
            SELECT email_key, md5(email_key), 'bounce', 'bench', '', now()
            FROM subscribers WHERE id % 100 = 7"""))
        conn.execute(text("ANALYZE"))
    engine.dispose()


def median_ms(fn: Callable[[], int], repeat: int = 5) -> tuple[float, int]:
    samples, result = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, result


def measure(url: str) -> None:
    app = create_app({"testing": True, "secret_key": "bench", "database_url": url})
    with app.app_context():
        session = db.session()
        lists = {ml.slug: ml for ml in session.scalars(select(MailingList))}
        newsletter = lists["newsletter"].id
        ref_ms, ref_n = median_ms(lambda: int(session.scalar(text(
            "SELECT count(*) FROM subscriptions WHERE list_id = :l AND status = 'confirmed'"
        ), {"l": newsletter}) or 0))
        print(f"{'audience count (median of 5)':36} {'ms':>8} {'people':>10}")
        for name, (slugs, segment) in CASES.items():
            campaign = Campaign(name=name, kind=CampaignKind.newsletter, subject="s", body="b",
                                segment=segment, lists=[lists[s] for s in slugs])
            ms, n = median_ms(lambda c=campaign: audience_count(session, c))  # type: ignore[misc]
            print(f"{name:36} {ms:8.1f} {n:10,}")
        print(f"{'reference: bare count of newsletter':36} {ref_ms:8.1f} {ref_n:10,}")
        session.rollback()
    app.extensions["db"].engine.dispose()


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with scratch_database("audience") as url:
        started = time.perf_counter()
        fill(url, rows)
        extend(url)
        print(f"{rows:,} subscribers filled in {time.perf_counter() - started:.0f}s")
        measure(url)


if __name__ == "__main__":
    main()
