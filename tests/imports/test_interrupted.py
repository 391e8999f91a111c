"""An import that dies midway leaves whole chunks behind, and simply runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from service import db
from service.imports.csvfile import Problem, Row, rows
from service.imports.importer import ImportOptions, run_import
from service.models import ConsentRecord, Subscriber, Subscription
from tests.factories import list_id
from tests.queries import count
from tests.support import TEST_SECRET_KEY, run_cli

from .csv_files import people, write_csv

NOTE = "Volunteers' sign-up sheets"
BIN = Path(sys.executable).parent


class DiskFailure(RuntimeError):
    pass


def failing_after(items: Iterator[Row | Problem], n: int) -> Iterator[Row | Problem]:
    """A real row source that breaks after n rows, like a file on a dying disk."""
    for i, item in enumerate(items):
        if i == n:
            raise DiskFailure("read error")
        yield item


def assert_consistent(expected: int | None = None) -> int:
    """Every subscriber has exactly its one subscription and one consent record."""
    n = count(Subscriber)
    assert count(Subscription) == n and count(ConsentRecord) == n
    orphans = db.session().scalar(select(func.count()).select_from(Subscriber).where(
        ~Subscriber.id.in_(select(Subscription.subscriber_id))))
    assert orphans == 0
    if expected is not None:
        assert n == expected
    return n


def test_exception_from_the_row_source_then_run_again(app, tmp_path):
    path = write_csv(tmp_path / "big.csv", people(2600, invalid_every=100))
    options = ImportOptions(list_id=list_id("newsletter"), confirmed=True, consent_note=NOTE,
                            chunk_size=500)
    with path.open(encoding="utf-8-sig", newline="") as text_file, \
            pytest.raises(DiskFailure):
        run_import(db.session(), failing_after(rows(text_file), 1250), options)
    # two whole chunks of 500 rows (5 broken addresses each) are in; the third is not
    assert assert_consistent() == 990

    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE, "--chunk-size", "500")
    assert result.exit_code == 0, result.output
    assert "2,600 rows: 1,584 created, 0 updated, 990 skipped, 0 refused, 26 invalid" \
        in result.output
    assert_consistent(2574)
    assert db.session().scalar(select(func.count(func.distinct(Subscriber.email_key)))) == 2574


def _count_in(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM subscribers")).scalar_one())
    finally:
        engine.dispose()


def test_sigkill_mid_import_then_run_again(app, tmp_path):
    total, chunk = 20_000, 250
    path = write_csv(tmp_path / "members.csv", people(total))
    url = app.extensions["settings"].database_url
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET_KEY, "REDIS_URL": ""}
    proc = subprocess.Popen(
        [str(BIN / "actionlist"), "import", str(path), "--list", "newsletter", "--confirmed",
         "--consent-note", NOTE, "--chunk-size", str(chunk)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _count_in(url) < 4 * chunk:
            assert proc.poll() is None, "the import finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    db.session().expire_all()
    done = assert_consistent()
    assert 0 < done < total and done % chunk == 0  # whole chunks only

    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE, "--chunk-size", "5000")
    assert result.exit_code == 0, result.output
    assert f"{total - done:,} created, 0 updated, {done:,} skipped" in result.output
    assert_consistent(total)
