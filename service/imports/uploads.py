"""Imports started from the API (or a later admin page): the upload, its job, its report.

The uploaded file is stored in the database in ~1 MB parts (`import_parts`), not on the
web server's disk, so a worker on any machine can run the import; the parts are deleted
once the import is done. The file is checked (UTF-8, a header with an email column)
while it is being stored, so a bad file is refused at upload with the same message the
CLI gives, and nothing is queued.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ..models import Import, ImportPart, ImportProblem, MailingList
from ..queue import enqueue_after_commit
from .csvfile import BLOCK, Scanner

# The job that runs an import (enqueued by name: no domain module imports a job).
RUN_JOB = "service.jobs.imports.run_import"
# A long import must not be cut off by RQ's job timeout; progress is committed per chunk.
JOB_TIMEOUT = 6 * 3600
# A worker killed mid-import leaves the job for RQ to retry; the retry resumes.
JOB_RETRY = (10, 60, 300)


def job_id(import_id: int, requeued_after: int | None = None) -> str:
    """The RQ job id of an import: its upload's job, or the recovery pass's requeue after
    attempt `requeued_after` (deterministic, so two passes name one job)."""
    base = f"import-{import_id}"
    return base if requeued_after is None else f"{base}-r{requeued_after}"


def queue_run(session: Session, import_id: int, requeued_after: int | None = None) -> None:
    """Queue the import's run once `session` commits (the upload, or a recovery requeue)."""
    enqueue_after_commit(
        session, RUN_JOB, import_id, queue="default", job_id=job_id(import_id, requeued_after),
        timeout=JOB_TIMEOUT, retry_intervals=JOB_RETRY,
    )


def create_import(
    session: Session,
    stream: IO[bytes],
    filename: str,
    mailing_list: MailingList,
    *,
    confirmed: bool,
    consent_note: str,
    actor: str,
) -> Import:
    """Check and store the upload, queue its job (after commit). The caller commits.

    Raises `FileError` (nothing stored once the caller rolls back).
    """
    row = Import(
        list_id=mailing_list.id,
        filename=Path(filename or "upload.csv").name[:255],
        confirmed=confirmed,
        consent_note=consent_note,
        created_by=actor[:200],
    )
    session.add(row)
    session.flush()
    scanner = Scanner()
    seq = 0
    while block := stream.read(BLOCK):
        scanner.feed(block)
        # A Core insert: the session keeps no megabytes of parts around.
        session.execute(insert(ImportPart), {"import_id": row.id, "seq": seq, "data": block})
        seq += 1
    found = scanner.finish()
    row.size_bytes = found.size
    row.total_rows = found.data_lines
    queue_run(session, row.id)
    return row


@contextmanager
def upload_file(session: Session, import_id: int) -> Iterator[Path]:
    """The stored upload written back to a temporary file (read part by part)."""
    folder = Path(tempfile.mkdtemp(prefix=f"actionlist-import-{import_id}-"))
    path = folder / "upload.csv"
    try:
        with path.open("wb") as out:
            seqs = session.scalars(
                select(ImportPart.seq).where(ImportPart.import_id == import_id)
                .order_by(ImportPart.seq)
            ).all()
            for seq in seqs:
                data = session.scalar(
                    select(ImportPart.data).where(
                        ImportPart.import_id == import_id, ImportPart.seq == seq
                    )
                )
                out.write(data or b"")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def drop_upload(session: Session, import_id: int) -> None:
    session.execute(delete(ImportPart).where(ImportPart.import_id == import_id))


def problems(session: Session, import_id: int) -> Iterator[ImportProblem]:
    """The rows not imported, in file order, streamed."""
    query = (
        select(ImportProblem)
        .where(ImportProblem.import_id == import_id)
        .order_by(ImportProblem.line)
        .execution_options(yield_per=2000)
    )
    yield from session.scalars(query)
