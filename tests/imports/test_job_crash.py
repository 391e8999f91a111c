"""An import job whose worker dies midway (the API / RQ path).

A real `python worker.py` is SIGKILLed mid-file: the database holds whole chunks with
their counts, nothing else. A surviving worker's recovery pass finds the import's
heartbeat older than `IMPORT_LEASE_SECONDS`, queues it again, and the new attempt resumes
after `processed_rows` and finishes with exactly the file's counts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from sqlalchemy import func, select, text, update
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from service import PROJECT_ROOT, db
from service.db import utcnow
from service.imports import runs
from service.imports.recovery import recover_imports
from service.jobs import imports as import_jobs
from service.models import (
    ConsentRecord,
    Import,
    ImportProblem,
    ImportStatus,
    Subscriber,
    Subscription,
)
from service.queue import JobRequest
from tests.factories import import_record
from tests.queries import count
from tests.support import TEST_SECRET_KEY, kill_worker, stop_worker

from .csv_files import HEADER, people

Headers = Callable[[str], dict[str, str]]
NOTE = "Petition signers, consent to updates ticked"
CHUNK = 5000  # the job's chunk size (importer.CHUNK_SIZE)


def file_rows(total: int) -> list[list[str]]:
    """`total` people (1 % broken addresses), then 300 of them again and 100 in upper case."""
    again = people(300, invalid_every=100)
    shouting = [[r[0].upper(), *r[1:]] for r in people(100, start=1000, invalid_every=100)]
    return people(total, invalid_every=100) + again + shouting


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(client: FlaskClient, headers: dict[str, str], data: bytes) -> int:
    # Encoded here: the test client would spool a body over 500 kB into a temporary file
    # that nobody closes (an unraisable ResourceWarning under `filterwarnings = error`).
    boundary, body = encode_multipart({
        "file": FileStorage(io.BytesIO(data), filename="signers.csv", content_type="text/csv"),
        "list": "newsletter", "confirmed": "true", "consent_note": NOTE})
    response = client.post("/api/v1/imports", headers=headers, data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 202, response.get_json()
    return int(response.get_json()["id"])


def state(import_id: int) -> dict[str, Any]:
    """The import row as committed now (no transaction left open)."""
    session = db.session()
    session.rollback()
    row = session.get(Import, import_id)
    assert row is not None
    session.refresh(row)
    out = {c: getattr(row, c) for c in (
        "status", "error", "processed_rows", "total_rows", "rows_created", "rows_updated",
        "rows_skipped", "rows_refused", "rows_invalid", "attempts", "heartbeat_at")}
    session.rollback()
    return out


def activity() -> list[Any]:
    """The other sessions on the test database (for a failure message: who waits on what)."""
    session = db.session()
    rows = list(session.execute(text(
        "SELECT pid, state, wait_event_type, wait_event, xact_start, left(query, 100)"
        " FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()")))
    session.rollback()
    return rows


def valid(rows: list[list[str]]) -> list[str]:
    return [r[0].lower() for r in rows if "@" in r[0]]


def assert_consistent(expected_emails: set[str]) -> None:
    """Exactly these people, each with one subscription and one consent record."""
    session = db.session()
    session.rollback()
    emails = list(session.scalars(select(Subscriber.email)))
    assert len(emails) == len(set(emails)) and set(emails) == expected_emails
    n = len(emails)
    assert count(Subscription) == n and count(ConsentRecord) == n
    for model in (Subscription, ConsentRecord):
        per_person = select(model.subscriber_id).group_by(model.subscriber_id)
        assert session.scalar(select(func.count()).select_from(
            per_person.having(func.count() != 1).subquery())) == 0
        assert session.scalar(select(func.count()).select_from(per_person.subquery())) == n
    session.rollback()


def problem_lines(import_id: int) -> list[int]:
    session = db.session()
    lines = list(session.scalars(select(ImportProblem.line)
                                 .where(ImportProblem.import_id == import_id)
                                 .order_by(ImportProblem.line)))
    session.rollback()
    return lines


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """worker.py in a process group of its own: RQ forks its scheduler into it."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=env,
                                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_worker_killed_mid_import_is_recovered_and_finishes_exactly(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str, tmp_path: Path,
) -> None:
    if backend != "postgres":
        pytest.skip("needs real worker processes on Redis")
    rows = file_rows(40_000)
    import_id = upload(client, api_token("campaigner"), csv_bytes(rows))
    conf = app.extensions["settings"]
    env = {**os.environ, "DATABASE_URL": conf.database_url, "REDIS_URL": conf.redis_url,
           "QUEUE_PREFIX": conf.queue_prefix, "SECRET_KEY": TEST_SECRET_KEY,
           "PUBLIC_URL": "http://localhost", "ORG_POSTAL_ADDRESS": "1 Main St"}
    log = tmp_path / "worker.log"

    doomed = _worker(env, log)  # the default lease: its own recovery pass takes nothing
    try:
        deadline = time.monotonic() + 20
        while (now := state(import_id))["processed_rows"] == 0:
            assert doomed.poll() is None, log.read_text()
            assert time.monotonic() < deadline, (now, log.read_text())
            time.sleep(0.01)
    finally:
        kill_worker(doomed)

    # Consistent: whole chunks, and the counts stored with them say exactly what is in.
    killed = state(import_id)
    assert killed["status"] == ImportStatus.running and killed["attempts"] == 1, killed
    done_rows = killed["processed_rows"]
    assert 0 < done_rows < len(rows) and done_rows % CHUNK == 0, killed
    assert_consistent(set(valid(rows[:done_rows])))
    assert killed["rows_created"] == count(Subscriber)
    assert killed["rows_invalid"] == len(problem_lines(import_id)) == done_rows // 100
    assert killed["rows_created"] + killed["rows_invalid"] == done_rows

    # A worker with a short lease: its periodic recovery pass requeues the import.
    survivor = _worker({**env, "IMPORT_LEASE_SECONDS": "2"}, log)
    try:
        deadline = time.monotonic() + 25
        while (now := state(import_id))["status"] != ImportStatus.done:
            assert survivor.poll() is None, log.read_text()
            assert now["status"] != ImportStatus.failed, now
            assert time.monotonic() < deadline, (now, activity(), log.read_text())
            time.sleep(0.1)
    finally:
        stop_worker(survivor)

    final = state(import_id)
    distinct = set(valid(rows))
    assert final["attempts"] == 2 and final["error"] == "", final  # resumed once, no error
    assert final["processed_rows"] == final["total_rows"] == len(rows)
    assert (final["rows_created"], final["rows_updated"], final["rows_skipped"],
            final["rows_refused"], final["rows_invalid"]) == (
        len(distinct), 0, len(valid(rows)) - len(distinct), 0,
        len(rows) - len(valid(rows)))
    assert_consistent(distinct)
    assert problem_lines(import_id) == [i + 2 for i, r in enumerate(rows) if "@" not in r[0]]
    job = Job.fetch(f"import-{import_id}-r1", connection=app.extensions["queue"].redis)
    assert job.get_status() == "finished" and job.return_value() == "done"  # the recovery's


def test_a_worker_that_lost_its_lease_stops_at_its_next_chunk(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str,
    run_jobs: Callable[..., None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow but live worker whose import was requeued writes no chunk more: its open
    chunk rolls back, and the attempt that takes over finishes with exact counts."""
    if backend != "postgres":
        pytest.skip("needs a second connection writing while a chunk is open")
    settings = app.extensions["settings"]
    monkeypatch.setitem(app.extensions, "settings",
                        dataclasses.replace(settings, import_lease_seconds=0))  # all stale
    rows = people(2 * CHUNK + 10)
    import_id = upload(client, api_token("campaigner"), csv_bytes(rows))
    real = runs._progress
    reports: list[dict[str, int]] = []

    def recover_elsewhere() -> None:  # another worker's recovery pass, on its own connection
        with app.app_context():
            reports.append(recover_imports())

    def progress(iid: int, attempt: int) -> runs.ChunkHook:
        hook = real(iid, attempt)

        def slow(session: Any, result: Any) -> None:
            if result.last_line > CHUNK + 1:  # the second chunk, written but not committed
                other = threading.Thread(target=recover_elsewhere)
                other.start()
                other.join(20)
            hook(session, result)

        return slow

    with monkeypatch.context() as patch:
        patch.setattr(runs, "_progress", progress)
        assert import_jobs.run_import(import_id) == "lease lost: taken over by another attempt"
    assert reports == [{"requeued_imports": 1, "reenqueued_imports": 0}]
    taken = state(import_id)
    assert taken["status"] == ImportStatus.queued and taken["processed_rows"] == CHUNK
    assert taken["rows_created"] == count(Subscriber) == CHUNK  # chunk 2 rolled back
    assert_consistent({r[0] for r in rows[:CHUNK]})

    run_jobs()  # the upload's job and the recovery's: one resumes, the other finds it done
    final = state(import_id)
    assert final["status"] == ImportStatus.done and final["attempts"] == 2, final
    assert (final["rows_created"], final["rows_skipped"]) == (len(rows), 0)
    assert_consistent({r[0] for r in rows})


def test_recovery_requeues_only_abandoned_imports(
    app: Flask, backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = db.session()
    now = utcnow()
    old, recent = now - timedelta(minutes=10), now - timedelta(seconds=5)  # lease: 120 s

    def make(status: ImportStatus, beat: Any, created: Any = None, attempts: int = 1) -> int:
        return import_record(status, heartbeat_at=beat, created_at=created or now,
                             attempts=attempts, commit=False).id

    abandoned = make(ImportStatus.running, old, old)
    never_beat = make(ImportStatus.running, None, old)
    alive = make(ImportStatus.running, recent, old)
    done = make(ImportStatus.done, old, old)
    failed = make(ImportStatus.failed, old, old)
    lost_job = make(ImportStatus.queued, None, old, attempts=0)
    just_queued = make(ImportStatus.queued, None, now, attempts=0)
    tq = app.extensions["queue"]
    waiting = 0
    if tq.redis is not None:  # queued long ago, its upload's job still in the queue
        waiting = make(ImportStatus.queued, None, old, attempts=0)
        tq.rq_queue("default").enqueue(import_jobs.run_import, waiting, job_id=f"import-{waiting}")
    session.commit()
    submitted: list[JobRequest] = []
    monkeypatch.setattr(tq, "submit_all", submitted.extend)

    assert recover_imports() == {"requeued_imports": 2, "reenqueued_imports": 1}
    assert [(j.func, j.args, j.queue, j.job_id) for j in submitted] == [
        ("service.jobs.imports.run_import", (abandoned,), "default", f"import-{abandoned}-r1"),
        ("service.jobs.imports.run_import", (never_beat,), "default", f"import-{never_beat}-r1"),
        ("service.jobs.imports.run_import", (lost_job,), "default", f"import-{lost_job}-r0"),
    ]
    assert state(abandoned)["status"] == ImportStatus.queued
    assert state(abandoned)["error"] == "requeued: worker lost"
    assert state(alive)["status"] == ImportStatus.running
    assert state(alive)["heartbeat_at"] == recent and state(alive)["error"] == ""
    assert state(done)["status"] == ImportStatus.done
    assert state(failed)["status"] == ImportStatus.failed
    assert state(just_queued)["heartbeat_at"] is None

    # A second pass (another worker's, or the next period) enqueues nothing again.
    submitted.clear()
    assert recover_imports() == {"requeued_imports": 0, "reenqueued_imports": 0}
    assert submitted == []

    if tq.redis is not None:  # the waiting job lost (Redis flushed): the next pass sees it
        Job.fetch(f"import-{waiting}", connection=tq.redis).delete()
        assert recover_imports() == {"requeued_imports": 0, "reenqueued_imports": 1}
        assert [j.job_id for j in submitted] == [f"import-{waiting}-r0"]


@pytest.mark.parametrize("heartbeat_age", [600, 5], ids=["long-dead", "just-restarted"])
def test_embedded_mode_resumes_an_import_a_restart_interrupted(
    app: Flask, client: FlaskClient, run_jobs: Callable[..., None], heartbeat_age: int,
) -> None:
    """No Redis, so no worker runs recovery passes: the first request does, and once more
    a lease later (an import interrupted a moment ago does not look abandoned yet)."""
    from service.imports.uploads import create_import
    from service.models import MailingList

    if app.extensions["queue"].local is None:
        pytest.skip("the embedded mode (in-process jobs)")
    rows = people(300, invalid_every=100)
    session = db.session()
    newsletter = session.scalars(select(MailingList).where(MailingList.slug == "newsletter")).one()
    row = create_import(session, io.BytesIO(csv_bytes(rows)), "signers.csv", newsletter,
                        confirmed=True, consent_note=NOTE, actor="test")
    # The process died after this commit and before its job ran: the import looks like a
    # killed run (running, heartbeat stopped) and no job is left anywhere.
    session.info.pop("jobs_after_commit")
    row.status, row.attempts = ImportStatus.running, 1
    row.heartbeat_at = utcnow() - timedelta(seconds=heartbeat_age)
    session.commit()
    import_id = row.id

    assert client.get("/healthz").status_code == 200  # the (restarted) app's first request
    run_jobs()
    lease = app.extensions["settings"].import_lease_seconds
    if heartbeat_age < lease:
        assert state(import_id)["status"] == ImportStatus.running  # not stale yet
        # A lease later (the clock moved on: the heartbeat has aged by as much), the
        # second pass, already on its timer, finds it abandoned.
        session.execute(update(Import).where(Import.id == import_id).values(
            heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age + lease)))
        session.commit()
        run_jobs(due_within=lease + 5)
    final = state(import_id)
    assert final["status"] == ImportStatus.done, final
    assert (final["rows_created"], final["rows_invalid"], final["attempts"]) == (297, 3, 2)
    assert_consistent(set(valid(rows)))
