"""Migration 1900 on SQLite and PostgreSQL: events stored but not yet applied become
batches the job applies, in their order; applied events keep only their keys, so a
re-delivery after the upgrade is still a duplicate."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, TextClause, create_engine, text
from sqlalchemy.orm import Session

from service import PROJECT_ROOT
from service.webhooks.ingest import content_key, dedup_key, fresh_events, load_batch

from ..test_migrations import empty_database  # noqa: F401 - the fixture, on both backends


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
        conn.execute(insert, [  # content keys as that revision made them: the bare digest
            {"d": dedup_key(e, content_key(e)), "c": content_key(e)[-64:], "p": json.dumps(e),
             "done": "2026-01-01 00:00:00" if e in applied else None}
            for e in applied + pending])
    command.upgrade(cfg, "1900")
    with engine.connect() as conn:
        batches = conn.execute(text(
            "SELECT body, events FROM webhook_batches ORDER BY id")).all()
        keys = conn.execute(text("SELECT count(*) FROM webhook_event_keys")).scalar()
    assert [n for _body, n in batches] == [5000, 2]
    assert [e for body, _n in batches for e in load_batch(body)] == pending
    assert keys == 3
    with pytest.raises(RuntimeError, match="not applied yet"):
        command.downgrade(cfg, "1200")
    with Session(engine) as session:
        fresh, duplicates = fresh_events(session, applied + pending[:1])
        assert fresh == pending[:1] and duplicates == {"open": 3}
        session.rollback()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_batches"))
    command.downgrade(cfg, "1200")
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL")).scalar() == 3
    command.upgrade(cfg, "head")
