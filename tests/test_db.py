"""The connection pool's disconnect handling against a real PostgreSQL server."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from service.db import make_engine, ping_when_idle


def _pooled_backend(engine) -> int:
    """Open, use and return one connection to the pool; its server process id."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    admin.dispose()
    time.sleep(0.2)


def test_an_idle_pooled_connection_the_server_dropped_is_replaced(postgres_url):
    """A connection killed server-side while it sat in the pool is pinged on checkout
    and replaced: the next user never sees the error."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, 0.1)
    first = _pooled_backend(engine)
    _terminate(postgres_url, first)
    time.sleep(0.2)  # idle longer than the threshold
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
    engine.dispose()


def test_a_connection_used_moments_ago_is_not_pinged(postgres_url):
    """Within the threshold there is no ping (that is the point): a connection killed in
    that window fails its statement once, and the pool then recovers by itself."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, 60.0)
    _terminate(postgres_url, _pooled_backend(engine))
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_the_app_engine_pings_idle_connections(postgres_url, monkeypatch):
    import service.db

    monkeypatch.setattr(service.db, "PING_AFTER_IDLE_SECONDS", 0.1)
    engine = make_engine(postgres_url)
    first = _pooled_backend(engine)
    _terminate(postgres_url, first)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
    engine.dispose()
