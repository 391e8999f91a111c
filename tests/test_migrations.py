"""Every migration runs up and down on SQLite and PostgreSQL and matches the models; the files
sort in the order the revisions run."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SAWarning

from service import PROJECT_ROOT
from service.db import Base

from .support import PG_URL, backends


@pytest.fixture(params=backends())
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"actionlist_migrations_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_check_downgrade_upgrade(empty_database: str) -> None:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = empty_database
    command.upgrade(cfg, "head")
    with warnings.catch_warnings():
        # SQLite cannot reflect the lower(name) search indexes; PostgreSQL checks them.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        command.check(cfg)  # raises if the models and the migrated schema differ
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        lists = conn.execute(text("SELECT slug FROM mailing_lists ORDER BY slug")).scalars()
        assert list(lists) == ["action-alerts", "newsletter"]
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_file_names_sort_in_chain_order() -> None:
    """Listing migrations/versions gives the revisions in the order they run."""
    scripts = ScriptDirectory.from_config(Config(str(PROJECT_ROOT / "alembic.ini")))
    assert len(scripts.get_heads()) == 1
    chain = [Path(script.path).name for script in reversed(list(scripts.walk_revisions()))]
    assert chain == sorted(chain)
