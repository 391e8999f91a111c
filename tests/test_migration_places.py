"""Migration 1700 fills in the county and time zone (and the state) of subscribers that
were stored before places came from the ZIP dataset, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from service import PROJECT_ROOT

from .test_migrations import empty_database  # noqa: F401 - the fixture, on both backends

ROWS = [
    # email, postal code, state as stored before → expected (state, county, timezone)
    ("brooklyn@example.org", "11201", "NY", ("NY", "Kings County", "America/New_York")),
    ("plus4@example.org", "94110-1234", "CA", ("CA", "San Francisco County",
                                               "America/Los_Angeles")),
    ("wrongstate@example.org", "60614", "", ("IL", "Cook County", "America/Chicago")),
    ("unknownzip@example.org", "00000", "TX", ("TX", "", "")),
    ("abroad@example.org", "SW1A 1AA", "", ("", "", "")),
    ("nozip@example.org", "", "OR", ("OR", "", "")),
    ("bethel@example.org", "99634", "AK", ("AK", "Bethel Census Area", "America/Anchorage")),
]


def test_backfill_on_both_databases(empty_database: str) -> None:  # noqa: F811
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = empty_database
    command.upgrade(cfg, "1100")
    engine = create_engine(empty_database)
    many = 4500  # more than two chunks
    with engine.begin() as conn:
        insert = text(
            "INSERT INTO subscribers (email, email_key, first_name, last_name, postal_code,"
            " state, locale, status, attributes, created_at, updated_at) VALUES (:e, :e,"
            " '', '', :p, :s, 'en', 'active', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        conn.execute(insert, [{"e": e, "p": p, "s": s} for e, p, s, _ in ROWS])
        conn.execute(insert, [{"e": f"bulk{i}@example.org", "p": "10001", "s": ""}
                              for i in range(many)])
    command.upgrade(cfg, "1700")
    with engine.connect() as conn:
        got = {email: (state, county, zone) for email, state, county, zone in conn.execute(
            text("SELECT email, state, county, timezone FROM subscribers"))}
    for email, _, _, expected in ROWS:
        assert got[email] == expected, email
    bulk = {got[f"bulk{i}@example.org"] for i in range(many)}
    assert bulk == {("NY", "New York County", "America/New_York")}
    command.downgrade(cfg, "1100")  # the data stays; the columns go with 1100's downgrade
    command.upgrade(cfg, "head")
    engine.dispose()
