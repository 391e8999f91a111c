"""Fixtures: the app on SQLite (embedded mode) and on PostgreSQL + Redis, the sink, jobs.

`TEST_DATABASE_URL` (a PostgreSQL server URL; a fresh database is created per run) and
`TEST_REDIS_URL` add the PostgreSQL + Redis backend. With `CI=true` both are required.
Test modules import what they share with these fixtures from `tests.support`, and seed
through `tests.factories`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import PROJECT_ROOT, create_app
from service.db import Base
from tests import factories
from tests.support import CI, PG_URL, REDIS_URL, TEST_SECRET_KEY, backends, run_jobs_of

if TYPE_CHECKING:
    from sendgrid_sink import SinkServer

KEEP_TABLES = {"mailing_lists", "alembic_version"}


def pytest_sessionstart(session: pytest.Session) -> None:
    if CI and not (PG_URL and REDIS_URL):
        raise pytest.UsageError("CI=true needs TEST_DATABASE_URL and TEST_REDIS_URL")


def migrate(url: str) -> None:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"actionlist_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of our own: claimed with SET NX so parallel runs don't collide."""
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set")
    base = Redis.from_url(REDIS_URL)
    claim = f"actionlist-test-{os.getpid()}-{secrets.token_hex(3)}"
    for number in range(1, 16):
        if base.set(f"actionlist:testdb:{number}", claim, nx=True, ex=3600):
            break
    else:
        raise RuntimeError("no free Redis database for tests")
    url = REDIS_URL.rstrip("/").rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL
    url = f"{url.rstrip('/')}/{number}"
    Redis.from_url(url).flushdb()
    yield url
    Redis.from_url(url).flushdb()
    base.delete(f"actionlist:testdb:{number}")
    base.close()


@pytest.fixture(scope="session")
def sink() -> Iterator[SinkServer]:
    from sendgrid_sink import SinkServer

    server = SinkServer()
    server.start()
    yield server
    server.stop()


def _default_lists() -> list[dict[str, str]]:
    """The lists the migration 0002 creates, read from it (one source of their names)."""
    path = PROJECT_ROOT / "migrations" / "versions" / "002_0002_default_lists.py"
    spec = importlib.util.spec_from_file_location("default_lists_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.LISTS)


DEFAULT_LISTS = _default_lists()


def reset_database(url: str) -> None:
    engine = create_engine(url)
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # A connection left over by an earlier test (a killed worker's child, a leaked
            # session) would make TRUNCATE wait forever: end them, and fail fast if not.
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ))
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())
        conn.execute(
            text("DELETE FROM mailing_lists WHERE slug NOT IN ('action-alerts', 'newsletter')")
        )
        # The two kept lists as the migration made them: a test may rename them, hide them
        # or give them a welcome (the API fuzz edits whatever list ids it guesses).
        for kept in DEFAULT_LISTS:
            conn.execute(text(
                "UPDATE mailing_lists SET name_en = :name_en, name_es = :name_es,"
                " description_en = :description_en, description_es = :description_es,"
                " public = :public, welcome = '{}' WHERE slug = :slug"), {**kept, "public": True})
    engine.dispose()


def app_config(backend: str, request: pytest.FixtureRequest, sink: SinkServer,
               tmp_path: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "testing": True,
        "secret_key": TEST_SECRET_KEY,
        "public_url": "http://localhost",
        "sendgrid_api_key": "SG.test",
        "sendgrid_api_host": sink.url,
        "sendgrid_timeout": 5.0,
        "outbox_dir": str(tmp_path / "outbox"),
        "mail_from": "Drug Policy Action <alerts@example.org>",
        "org_name": "Drug Policy Action",
        "org_postal_address": "1 Main St, Springfield, IL 62701",
        "form_allowed_origins": ("http://partner.example",),
        "signup_rate_limit": "1000/minute",
    }
    if backend == "postgres":
        config["database_url"] = request.getfixturevalue("postgres_url")
        config["redis_url"] = request.getfixturevalue("redis_url")
        config["queue_prefix"] = "t-"
    else:
        config["database_url"] = request.getfixturevalue("sqlite_url")
    return config


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_app(
    backend: str, request: pytest.FixtureRequest, sink: SinkServer, tmp_path: Path
) -> Iterator[Callable[..., Flask]]:
    """Build an app on the current backend with extra settings."""
    base = app_config(backend, request, sink, tmp_path)
    reset_database(base["database_url"])
    if backend == "postgres":
        Redis.from_url(base["redis_url"]).flushdb()
    sink.clear()
    sink.set_faults(0.0, [])
    built: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = create_app({**base, **overrides})
        built.append(app)
        return app

    yield factory
    for app in built:
        stop_local_jobs(app)
        app.extensions["db"].engine.dispose()


def stop_local_jobs(app: Flask) -> None:
    """End a test's in-process jobs: cancel its timers (retries, scheduled jobs) and wait for
    the running job, so that nothing of one test runs later inside another on the same
    SQLite file (a retry firing 10 s later once applied a test's events twice)."""
    local = app.extensions["queue"].local
    if local is None:
        return
    with local.lock:
        timers = list(local.timers)
        local.timers.clear()
    for timer in timers:
        timer.cancel()
    local.drain()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def run_jobs(app: Flask) -> Callable[..., None]:
    """`run_jobs()`: every queued job run to completion (`tests.support.run_jobs_of`);
    `run_jobs(due_within=60)` fast-forwards the clock by a minute."""

    return functools.partial(run_jobs_of, app)


@pytest.fixture
def api_token(app: Flask) -> Callable[[str], dict[str, str]]:
    """api_token("campaigner") → the headers of a request with a new token of that role."""

    def headers(role: str = "admin") -> dict[str, str]:
        return factories.bearer(factories.api_token(role))

    return headers
