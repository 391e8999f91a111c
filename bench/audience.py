"""Campaign audience count on a large table (the editor's live count; target ≤ 500 ms),
and the freeze of a segmented audience against a list-only one (target ≤ 1.5×).

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python bench/audience.py [ROWS] [--explain] [--campaigns N] [--no-freeze]

Creates a scratch PostgreSQL database, migrates it and fills ROWS subscribers (default
1,000,000) the way bench/admin_search.py does (a third confirmed on `newsletter`, states
CA/NY/TX/IL, a fifth Spanish), puts a tenth of the confirmed ones on `action-alerts` too and
suppresses 1% of the addresses. It then times `service.campaigns.audience.audience_count`
(median of 5) for typical targets. The reference in the same run is the cheapest possible
count: `SELECT count(*) FROM subscriptions WHERE list_id = … AND status = 'confirmed'`,
which ignores segments, suppressions and people on two lists.

Segments (`extend_segments`): everyone gets a county (five New York counties' names, so
"Kings County, NY" is a fifth of the New Yorkers), an attribute `cd` (NY-1 … NY-15), the
tag `member` (nine in ten) and `volunteer` (one in three); 20 campaigns were sent to the
newsletter's confirmed people over the last 40 days, with unique opens from about one in
five recipients and clicks from one in thirty. The segment case combines an attribute, a
tag, a county and `not_opened` of the last campaign; it is printed next to the plain list
count of the same run. The freeze (`sending.freeze_audience`, rolled back after each
run) puts a list of every subscriber (ROWS recipients) into deliveries as it is, and
again through a broad segment of the same four kinds; median of 3, alternating.

At ten million, `--campaigns 2 --no-freeze` keeps the set-up to minutes: 20 campaigns of a
third of the subscribers would be 66 million deliveries, and the freezes 60 million
rolled-back rows (the campaign bench shows the freeze at that size).
"""

from __future__ import annotations

import argparse
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
from service.campaigns.audience import audience_count, audience_query  # noqa: E402
from service.campaigns.sending import freeze_audience  # noqa: E402
from service.models import Campaign, CampaignKind, MailingList  # noqa: E402

CAMPAIGNS = 20
COUNTIES = ["Kings County", "Queens County", "Bronx County", "New York County",
            "Richmond County"]

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


def extend_segments(url: str, campaigns: int = CAMPAIGNS) -> int:
    """Counties, attributes, tags, a list of everyone, 20 sent campaigns with deliveries
    and unique opens and clicks; the id of the last campaign."""
    engine = create_engine(url)
    counties = "ARRAY[" + ",".join(f"'{c}'" for c in COUNTIES) + "]"
    with engine.begin() as conn:
        conn.execute(text(f"""
            UPDATE subscribers SET county = ({counties})[1 + (id / 4) % 5],
                attributes = json_build_object('cd', 'NY-' || (1 + (id / 7) % 15))"""))
        conn.execute(text("""
            INSERT INTO subscriber_tags (subscriber_id, tag)
            SELECT id, 'member' FROM subscribers WHERE id % 10 <> 3
            UNION ALL SELECT id, 'volunteer' FROM subscribers WHERE (id / 3) % 3 = 1"""))
        conn.execute(text("""
            INSERT INTO mailing_lists (slug, name_en, name_es, description_en, description_es,
                                       public, created_at)
            VALUES ('everyone', 'Everyone', '', '', '', false, now())"""))
        conn.execute(text("""
            INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
            SELECT s.id, l.id, 'confirmed', now(), now()
            FROM subscribers s, mailing_lists l WHERE l.slug = 'everyone'"""))
        last = 0
        for n in range(campaigns):
            days_ago = 2 * (campaigns - n)
            last = int(conn.execute(text("""
                INSERT INTO campaigns (name, kind, subject, preheader, body, format, variants,
                    segment, source_code, status, status_reason, started_at, finished_at,
                    created_by, created_at, updated_at)
                VALUES (:name, 'newsletter', 's', '', 'b', 'markdown', '{}', '{}', '', 'sent',
                        '', now() - :d * interval '1 day',
                        now() - :d * interval '1 day' + interval '1 hour', 'bench', now(),
                        now())
                RETURNING id"""), {"name": f"sent {n}", "d": days_ago}).scalar_one())
            conn.execute(text("""
                INSERT INTO deliveries (campaign_id, subscriber_id, status, reason, message_id,
                                        sent_at, event_status)
                SELECT :c, s.subscriber_id, 'sent', '', '',
                       now() - :d * interval '1 day' + interval '30 minutes', 'delivered'
                FROM subscriptions s JOIN mailing_lists l ON l.id = s.list_id
                WHERE l.slug = 'newsletter' AND s.status = 'confirmed'"""),
                {"c": last, "d": days_ago})
            conn.execute(text("""
                INSERT INTO campaign_event_uniques (campaign_id, event, recipient)
                SELECT :c, 'open', subscriber_id::text FROM deliveries
                WHERE campaign_id = :c AND (subscriber_id * 7 + :c) % 5 = 0
                UNION ALL
                SELECT :c, 'click', subscriber_id::text FROM deliveries
                WHERE campaign_id = :c AND (subscriber_id * 7 + :c) % 30 = 0"""), {"c": last})
    # A table in service has been vacuumed (autovacuum): measure that state, not the
    # hint-bit writes and heap fetches of rows nobody has visited since the fill.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return last


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


def segment_cases(last: int) -> tuple[dict[str, object], dict[str, object]]:
    """(the count's segment, the freeze's broad segment): an attribute, a tag, a county
    and not_opened of the last campaign, each."""
    narrow = {"attributes": {"cd": ["NY-10", "NY-12"]}, "tags_any": ["volunteer"],
              "counties": ["Kings County, NY"], "not_opened": {"campaigns": [last]}}
    broad = {"attributes": {"cd": [f"NY-{n}" for n in range(1, 15)]},
             "tags_any": ["member"],
             "counties": [f"{c}, {s}" for c in COUNTIES for s in ("CA", "NY", "TX", "IL")],
             "not_opened": {"campaigns": [last]}}
    return narrow, broad


def measure_segments(url: str, last: int, explain: bool, freeze: bool = True) -> None:
    narrow, broad = segment_cases(last)
    app = create_app({"testing": True, "secret_key": "bench", "database_url": url})
    with app.app_context():
        session = db.session()
        lists = {ml.slug: ml for ml in session.scalars(select(MailingList))}
        plain = Campaign(name="plain", kind=CampaignKind.newsletter, subject="s", body="b",
                         segment={}, lists=[lists["newsletter"]])
        seg = Campaign(name="segment", kind=CampaignKind.newsletter, subject="s", body="b",
                       segment=narrow, lists=[lists["newsletter"]])
        plain_ms, plain_n = median_ms(lambda: audience_count(session, plain))
        seg_ms, seg_n = median_ms(lambda: audience_count(session, seg))
        print()
        print(f"{'segment count (median of 5)':36} {'ms':>8} {'people':>10}")
        print(f"{'newsletter, plain list':36} {plain_ms:8.1f} {plain_n:10,}")
        print(f"{'newsletter, attr+tag+county+not_opened':36} {seg_ms:8.1f} {seg_n:10,}")
        print(f"  ratio segment / plain: {seg_ms / plain_ms:.2f}")
        if explain:
            query = audience_query([lists["newsletter"].id], narrow)
            sql = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            for (line,) in session.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")):
                print("   ", line)
        session.rollback()
        if not freeze:
            app.extensions["db"].engine.dispose()
            return

        everyone = [lists["everyone"]]
        frozen = {}
        for name, segment in (("list only", {}), ("segment", broad)):
            c = Campaign(name=f"freeze {name}", kind=CampaignKind.newsletter, subject="s",
                         body="b", segment=segment, lists=everyone)
            session.add(c)
            frozen[name] = c
        session.commit()
        samples: dict[str, list[float]] = {name: [] for name in frozen}
        sizes: dict[str, int] = {}
        for _ in range(3):
            for name, c in frozen.items():
                started = time.perf_counter()
                sizes[name] = freeze_audience(session, c, 1000)
                samples[name].append(time.perf_counter() - started)
                session.rollback()
        print()
        print(f"{'freeze of everyone (median of 3)':36} {'s':>8} {'recipients':>10}")
        for name in frozen:
            print(f"{name:36} {statistics.median(samples[name]):8.2f} {sizes[name]:10,}")
        ratio = statistics.median(samples["segment"]) / statistics.median(samples["list only"])
        print(f"  ratio segment / list only: {ratio:.2f}")
    app.extensions["db"].engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--explain", action="store_true",
                        help="print the segment count's EXPLAIN ANALYZE")
    parser.add_argument("--campaigns", type=int, default=CAMPAIGNS,
                        help="sent campaigns with opens and clicks (the last is the segment's)")
    parser.add_argument("--no-freeze", action="store_true", help="skip the freeze timings")
    args = parser.parse_args()
    with scratch_database("audience") as url:
        started = time.perf_counter()
        fill(url, args.rows)
        extend(url)
        last = extend_segments(url, args.campaigns)
        print(f"{args.rows:,} subscribers filled in {time.perf_counter() - started:.0f}s")
        measure(url)
        measure_segments(url, last, args.explain, freeze=not args.no_freeze)


if __name__ == "__main__":
    main()
