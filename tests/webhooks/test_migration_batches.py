"""Migrations 1900 and 2200 on SQLite and PostgreSQL: events stored but not yet applied
become batches the job applies, in their order; applied events keep only their keys, which
2200 turns into 16 bytes each, so a re-delivery after the upgrade is still a duplicate."""

from __future__ import annotations

import hashlib
import json

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, TextClause, create_engine, text
from sqlalchemy.orm import Session

from service import PROJECT_ROOT
from service.webhooks.ingest import fresh_events, load_batch

from ..test_migrations import empty_database  # noqa: F401 - the fixture, on both backends


def _old_content_key(event: dict[str, object], *, prefixed: bool) -> str:
    """A content key as the text-keyed revisions wrote it: the SHA-256 in hex, with the
    timestamp in hex in front from revision 1900 on."""
    get = event.get
    material = (f"{get('sg_message_id', '')}\x00{get('event', '')}\x00"
                f"{get('timestamp', '')}\x00{str(get('email', '')).lower()}\x00"
                f"{get('url', '')}")
    digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{get('timestamp'):x}:{digest}" if prefixed else digest


def _event(i: int) -> dict[str, object]:
    return {"event": "open", "email": f"r{i}@example.org", "timestamp": 1_790_000_000 + i,
            "sg_event_id": f"ev{i}", "sg_message_id": f"m{i}", "note": "lone \ud800 kept"}


def test_pending_events_become_batches_and_keys_stay(empty_database: str) -> None:  # noqa: F811
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = empty_database
    command.upgrade(cfg, "1200")
    engine = create_engine(empty_database)
    applied = [_event(i) for i in range(3)]
    pending = [_event(i) for i in range(3, 5005)]  # more than one batch of 5,000
    insert = text(
        "INSERT INTO webhook_events (dedup_key, content_key, event, payload, received_at,"
        " processed_at) VALUES (:d, :c, 'open', :p, CURRENT_TIMESTAMP, :done)")
    try:
        _upgrade_and_check(cfg, engine, insert, applied, pending)
    finally:
        engine.dispose()


def _upgrade_and_check(cfg: Config, engine: Engine, insert: TextClause,
                       applied: list[dict[str, object]], pending: list[dict[str, object]]
                       ) -> None:
    with engine.begin() as conn:
        conn.execute(insert, [  # keys as that revision made them
            {"d": f"id:{e['sg_event_id']}", "c": _old_content_key(e, prefixed=False),
             "p": json.dumps(e), "done": "2026-01-01 00:00:00" if e in applied else None}
            for e in applied + pending])
    command.upgrade(cfg, "1900")
    with engine.connect() as conn:
        batches = conn.execute(text(
            "SELECT body, events FROM webhook_batches ORDER BY id")).all()
        keys = set(conn.execute(text("SELECT content_key FROM webhook_event_keys")).scalars())
    assert [n for _body, n in batches] == [5000, 2]
    assert [e for body, _n in batches for e in load_batch(body)] == pending
    assert keys == {_old_content_key(e, prefixed=True) for e in applied}
    with pytest.raises(RuntimeError, match="not applied yet"):
        command.downgrade(cfg, "1200")
    command.upgrade(cfg, "head")
    _assert_applied_are_duplicates(engine, applied, pending[:1])
    command.downgrade(cfg, "1900")  # 2200 keeps no keys on the way down
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_batches"))
        conn.execute(text("INSERT INTO webhook_event_keys (dedup_key, content_key, "
                          "received_at) VALUES ('id:ev0', :c, CURRENT_TIMESTAMP)"),
                     {"c": _old_content_key(applied[0], prefixed=True)})
    command.downgrade(cfg, "1200")
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT content_key FROM webhook_events WHERE processed_at IS NOT NULL")
        ).scalars().all() == [_old_content_key(applied[0], prefixed=False)]
    command.upgrade(cfg, "head")


def _assert_applied_are_duplicates(engine: Engine, applied: list[dict[str, object]],
                                   new: list[dict[str, object]]) -> None:
    with Session(engine) as session:
        fresh, duplicates = fresh_events(session, applied + new)
        assert fresh == new and duplicates == {str(applied[0]["event"]): len(applied)}
        session.rollback()


def test_text_keys_become_binary_and_still_find_duplicates(
        empty_database: str) -> None:  # noqa: F811
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = empty_database
    command.upgrade(cfg, "2100")
    engine = create_engine(empty_database)
    with_id = [_event(i) for i in range(3)]
    without_id = {"event": "click", "email": "x@example.org", "timestamp": 1_790_000_100,
                  "sg_message_id": "m9", "url": "https://example.org/a"}
    no_time = {"event": "open", "email": "y@example.org", "sg_message_id": "m8"}
    rows = [{"d": f"id:{e['sg_event_id']}", "c": _old_content_key(e, prefixed=True)}
            for e in with_id]
    rows.append({"d": f"h:{_old_content_key(without_id, prefixed=True)}",
                 "c": _old_content_key(without_id, prefixed=True)})
    rows.append({"d": f"h:{_old_content_key(no_time, prefixed=False)}",
                 "c": _old_content_key(no_time, prefixed=False)})
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO webhook_event_keys (dedup_key, content_key, "
                              "received_at) VALUES (:d, :c, CURRENT_TIMESTAMP)"), rows)
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT dedup_key, content_key "
                                       "FROM webhook_event_keys")).all()
        assert len(stored) == 5
        assert {len(bytes(k)) for row in stored for k in row} == {16}
        # A re-delivery (same ids), a re-send under new ids: duplicates either way.
        resent = [{**e, "sg_event_id": f"new-{e['sg_event_id']}"} for e in with_id]
        for again in (with_id, resent):
            _assert_applied_are_duplicates(engine, again, [_event(7)])
        _assert_applied_are_duplicates(engine, [without_id], [_event(7)])
        _assert_applied_are_duplicates(engine, [no_time], [_event(7)])
        command.downgrade(cfg, "2100")  # keeps no keys (hashes cannot become ids again)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM webhook_event_keys")).scalar() == 0
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()
