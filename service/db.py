"""Engine, sessions and the declarative base.

The app keeps one `Database` in `app.extensions["db"]`; code reaches the session of the
current request or job through `session()`. No engine is created at import time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    DateTime,
    Enum,
    MetaData,
    Table,
    create_engine,
    delete,
    event,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The largest id any table holds: the narrowest id columns (campaigns, mailing lists,
# users, API tokens) are PostgreSQL INTEGERs, and a larger number compared with them is
# a database error, not "no such row".
MAX_ID = 2**31 - 1


def parse_id(text: object) -> int | None:
    """`text` as a row id (ASCII digits, 1 to MAX_ID), or None if it is not one.

    `str.isdigit()` also accepts `²` (which `int()` refuses) and other scripts' digits
    (which `int()` reads), and a number past MAX_ID makes the database raise: ids typed
    into URLs and forms go through here instead.
    """
    if not isinstance(text, str) or not 0 < len(text) <= 10 or not text.isascii():
        return None
    if not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def settings_for_counts(session: Session) -> Iterator[None]:
    """PostgreSQL settings for an interactive count over the big tables (the editor's
    live audience count), in a savepoint that is rolled back after it, so nothing else
    in the transaction runs with them:

    - no JIT: compiling a count's plan costs 0.1-0.3 s at ten million subscribers,
      which a query of a few hundred milliseconds never wins back;
    - 32 MB of `work_mem`: a bitmap over ten million rows outgrows the default 4 MB and
      goes lossy, and the segment's conditions are then re-checked on a million rows.

    Measured in `docs/benchmarks.md` (audience count at ten million). A no-op on SQLite.
    """
    if not is_pg(session):
        yield
        return
    savepoint = session.begin_nested()
    try:
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '32MB'"))
        yield
    finally:
        savepoint.rollback()


def insert_for(session: Session, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's dialect (PostgreSQL or SQLite)."""
    return (pg_insert if is_pg(session) else sqlite_insert)(table)


def delete_in_chunks(session: Session, key: Any, *where: ColumnElement[bool],
                     chunk: int) -> int:
    """Delete the rows of `key`'s table that match `where`, `chunk` rows per committed
    statement (`DELETE … WHERE key IN (SELECT key … LIMIT chunk)`), so that a periodic
    clean-up never holds one long transaction; how many rows went."""
    table = key.table
    total = 0
    while True:
        some = select(key).where(*where).limit(chunk)
        result = session.execute(delete(table).where(key.in_(some)))
        gone = int(cast(CursorResult[Any], result).rowcount)
        session.commit()
        total += gone
        if gone < chunk:
            return total


def commit_quickly(session: Session) -> None:
    """Commit without waiting for the WAL flush (PostgreSQL `synchronous_commit` off).

    The commit is as atomic and as visible as any other; only a crash of the database
    server itself (not of the process) within ~0.6 s could lose it. For work that is
    safe to redo — an import chunk (idempotent), a campaign batch's bookkeeping (a lost
    "sent" mark means a re-sent batch, never a lost recipient), applying a stored Event
    Webhook batch (a lost commit keeps the batch, which is applied again) — and nothing else:
    signups, unsubscribes and staff actions keep the normal flush.
    """
    if is_pg(session):
        session.execute(text("SET LOCAL synchronous_commit TO off"))
    session.commit()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use service.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        enum.Enum: Enum(enum.Enum, native_enum=False, validate_strings=True, length=20),
    }


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    ping_when_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# A pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool a while.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and a session checks out a
    connection per transaction: a signup paid one extra round trip, a campaign batch
    five. A connection checked in moments ago was working moments ago; one that sat
    idle (the server may have restarted, a proxy may have dropped it) is pinged as
    before, and a dead one is replaced before anyone uses it. A connection that broke
    within the last `idle_seconds` fails its statement instead, and SQLAlchemy then
    discards it and the rest of the pool.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or back in the pool only moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("pooled connection failed its ping") from exc


class Database:
    """One engine plus a scoped session factory, owned by the Flask app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.scoped = scoped_session(self.factory)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def init_app(self, app: Flask) -> None:
        app.extensions["db"] = self

        @app.teardown_appcontext
        def _remove_session(_exc: BaseException | None) -> None:
            self.scoped.remove()


def database() -> Database:
    db: Database = current_app.extensions["db"]
    return db


def session() -> Session:
    """The session of the current request or job (scoped to the thread)."""
    return database().scoped()


@contextmanager
def new_session() -> Iterator[Session]:
    """A separate short-lived session, e.g. for a background thread."""
    with database().factory() as s:
        yield s
