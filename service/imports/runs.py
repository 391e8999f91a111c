"""One run of a stored import: claim it, import its rows chunk by chunk, finish it.

The job `service.jobs.imports.run_import` calls `run`; it is safe to run twice: the
claim lets one attempt work, and the attempt number fences its chunks.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, or_, update
from sqlalchemy.orm import Session

from .. import config
from ..db import insert_for, utcnow
from ..models import Import, ImportProblem, ImportStatus
from ..subscribers import Evidence
from .csvfile import FileError, rows, scan
from .importer import ChunkHook, ChunkResult, ImportOptions, run_import
from .uploads import drop_upload, upload_file

log = logging.getLogger(__name__)

PROBLEMS = cast(Table, ImportProblem.__table__)


class LeaseLost(RuntimeError):
    """The import was taken over (requeued or claimed by a newer attempt) meanwhile."""


def lease() -> timedelta:
    """A running import whose heartbeat (one per chunk, i.e. about every second) is older
    than this (`IMPORT_LEASE_SECONDS`) was abandoned by a killed worker: the recovery pass
    queues it again, and a retry of the job may take it over."""
    settings = config.settings()
    return timedelta(seconds=settings.import_lease_seconds)


def _claim(session: Session, import_id: int) -> bool:
    """Conditional UPDATE: queued, failed by an earlier attempt, or abandoned → running.

    Each claim counts one more attempt; the attempt number fences the chunks and the end
    of this run (`_progress`, `_finish`), so a worker that lost its lease stops.
    """
    now = utcnow()
    result = session.execute(
        update(Import)
        .where(
            Import.id == import_id,
            or_(
                Import.status.in_([ImportStatus.queued, ImportStatus.failed]),
                and_(
                    Import.status == ImportStatus.running,
                    or_(Import.heartbeat_at.is_(None), Import.heartbeat_at < now - lease()),
                ),
            ),
        )
        .values(status=ImportStatus.running, heartbeat_at=now, error="",
                attempts=Import.attempts + 1)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def _ours(import_id: int, attempt: int) -> Any:
    return and_(Import.id == import_id, Import.status == ImportStatus.running,
                Import.attempts == attempt)


def _progress(import_id: int, attempt: int) -> ChunkHook:
    def hook(session: Session, result: ChunkResult) -> None:
        c = result.counts
        moved = session.execute(
            update(Import)
            .where(_ours(import_id, attempt))
            .values(
                processed_rows=max(0, result.last_line - 1),
                rows_created=Import.rows_created + c.created,
                rows_updated=Import.rows_updated + c.updated,
                rows_skipped=Import.rows_skipped + c.skipped,
                rows_refused=Import.rows_refused + c.refused,
                rows_invalid=Import.rows_invalid + c.invalid,
                mails_queued=Import.mails_queued + c.mails_queued,
                heartbeat_at=utcnow(),
            )
        )
        if not getattr(moved, "rowcount", 0):
            raise LeaseLost(f"import {import_id}: attempt {attempt} was taken over")
        if result.problems:
            session.execute(
                insert_for(session, PROBLEMS).on_conflict_do_nothing(),
                [{"import_id": import_id, "line": p.line, "email": p.email[:254],
                  "reason": p.reason[:300]} for p in result.problems],
            )

    return hook


def _finish(session: Session, import_id: int, attempt: int, status: ImportStatus,
            error: str = "") -> None:
    values: dict[str, Any] = {"status": status, "error": error[:2000],
                              "finished_at": utcnow()}
    if status == ImportStatus.done:
        values["processed_rows"] = Import.total_rows
    ended = session.execute(update(Import).where(_ours(import_id, attempt)).values(**values))
    if getattr(ended, "rowcount", 0) and status == ImportStatus.done:
        drop_upload(session, import_id)  # the data is in; keep no copy of the file
    session.commit()


def run(session: Session, import_id: int) -> str:
    """Run (or resume) the import `import_id` from its stored upload."""
    if not _claim(session, import_id):
        return "not claimable (done, or running elsewhere)"
    row = session.get(Import, import_id)
    assert row is not None
    session.refresh(row)  # the claim's values, not an earlier attempt's in this session
    attempt = row.attempts
    if row.started_at is None:
        row.started_at = utcnow()
        session.commit()
    options = ImportOptions(
        list_id=row.list_id,
        confirmed=row.confirmed,
        consent_note=row.consent_note,
        evidence=Evidence(actor=row.created_by or "api", endpoint="import",
                          source=f"import {row.id}: {row.filename}"),
    )
    resume_after = row.processed_rows + 1  # the header is line 1
    try:
        with upload_file(session, import_id) as path:
            with path.open("rb") as raw:
                scan(raw)
            with path.open(encoding="utf-8-sig", newline="") as text:
                run_import(session, rows(text), options,
                           on_chunk=_progress(import_id, attempt), after_line=resume_after)
    except LeaseLost as exc:
        session.rollback()  # its chunk rolled back; the attempt that took over goes on
        log.warning("%s", exc)
        return "lease lost: taken over by another attempt"
    except FileError as exc:
        session.rollback()
        _finish(session, import_id, attempt, ImportStatus.failed, str(exc))
        return f"failed: {exc}"
    except Exception as exc:
        session.rollback()
        log.exception("import %s failed", import_id)
        _finish(session, import_id, attempt, ImportStatus.failed,
                f"{type(exc).__name__}: {exc}")
        raise  # RQ retries; the retry resumes after the last committed chunk
    _finish(session, import_id, attempt, ImportStatus.done)
    return "done"
