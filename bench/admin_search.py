"""Admin subscriber search on a large table: how long a page takes, with and without 0500.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python bench/admin_search.py [ROWS]

Creates a scratch PostgreSQL database, migrates it, fills ROWS subscribers (default
1,000,000; each on the newsletter list, a third confirmed) and times the admin's own
query functions (service.admin.queries) for typical searches: deep keyset pages, address
and name prefixes, filters. The reference printed last is the same searches with the
search indexes of migration 0500 dropped.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.harness import scratch_database  # noqa: E402
from service import create_app, db  # noqa: E402
from service.admin.queries import SubscriberFilters, search_subscribers  # noqa: E402

FIRST = ["Ana", "Bob", "Carla", "Diego", "Eva", "Fran", "Gus", "Hana", "Ivan", "Julia"]
LAST = ["Garcia", "Smith", "Lopez", "Jones", "Nguyen", "Brown", "Diaz", "Kim", "Lee", "Ortiz"]


def fill(url: str, rows: int) -> None:
    engine = create_engine(url)
    firsts = "ARRAY[" + ",".join(f"'{n}'" for n in FIRST) + "]"
    lasts = "ARRAY[" + ",".join(f"'{n}'" for n in LAST) + "]"
    with engine.begin() as conn:
        conn.execute(text(f"""
            INSERT INTO subscribers (email, email_key, first_name, last_name, postal_code,
                state, locale, status, attributes, created_at, updated_at)
            SELECT 'user' || i || '@example' || (i % 97) || '.org',
                   'user' || i || '@example' || (i % 97) || '.org',
                   ({firsts})[1 + i % 10] || (i % 1000), ({lasts})[1 + (i / 10) % 10],
                   '', (ARRAY['CA','NY','TX','IL'])[1 + i % 4],
                   CASE WHEN i % 5 = 0 THEN 'es' ELSE 'en' END, 'active', '{{}}',
                   now() - (i % 90) * interval '1 day', now()
            FROM generate_series(1, {rows}) AS i"""))
        conn.execute(text("""
            INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
            SELECT s.id, l.id, CASE WHEN s.id % 3 = 0 THEN 'confirmed' ELSE 'pending' END,
                   now(), now()
            FROM subscribers s, mailing_lists l WHERE l.slug = 'newsletter'"""))
        conn.execute(text("ANALYZE"))
    engine.dispose()


CASES: dict[str, SubscriberFilters] = {
    "newest page": SubscriberFilters(),
    "page 5,000 deep (keyset)": SubscriberFilters(before=250_000),
    "address prefix 'user12345'": SubscriberFilters(q="user12345"),
    "address exact-ish 'user777@'": SubscriberFilters(q="user777@"),
    "name prefix 'hana12'": SubscriberFilters(q="hana12"),
    "first+last 'ana1 garc'": SubscriberFilters(q="ana1 garc"),
    "list+status filter": SubscriberFilters(list_slug="newsletter", status="confirmed"),
    "state+lang+list": SubscriberFilters(state="TX", locale="es", list_slug="newsletter"),
}


def time_cases(url: str) -> dict[str, float]:
    app = create_app({"testing": True, "secret_key": "bench", "database_url": url})
    results: dict[str, float] = {}
    with app.app_context():
        for name, filters in CASES.items():
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                page = search_subscribers(db.session(), filters)
                samples.append(time.perf_counter() - start)
                db.session().rollback()
            assert page.items or name.startswith("address exact"), name
            results[name] = statistics.median(samples) * 1000
    app.extensions["db"].engine.dispose()
    return results


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with scratch_database("admin_search") as url:
        started = time.perf_counter()
        fill(url, rows)
        print(f"{rows:,} subscribers filled in {time.perf_counter() - started:.0f}s")
        measured = time_cases(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            for index in ("email_key_prefix", "first_name_prefix", "last_name_prefix"):
                conn.execute(text(f"DROP INDEX ix_subscribers_{index}"))
        engine.dispose()
        reference = time_cases(url)
        print(f"{'search (median of 5, ms)':34} {'with 0500':>10} {'without':>10}")
        for case in CASES:
            print(f"{case:34} {measured[case]:10.1f} {reference[case]:10.1f}")


if __name__ == "__main__":
    main()
