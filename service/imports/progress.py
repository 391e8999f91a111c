"""What an import's progress looks like to staff: one dict for the admin page's poller."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import Import, ImportStatus


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def import_progress(row: Import, now: datetime | None = None) -> dict[str, Any]:
    """Status, rows processed of total, per-outcome counts, rate and ETA of one import."""
    now = now or datetime.now(UTC)
    total = max(row.total_rows, 0)
    done = min(row.processed_rows, total) if total else row.processed_rows
    finished = row.status in (ImportStatus.done, ImportStatus.failed)
    percent = 100.0 if row.status == ImportStatus.done else (
        round(100.0 * done / total, 1) if total else 0.0)
    rate: float | None = None
    eta: int | None = None
    if row.started_at is not None and done:
        end = _aware(row.finished_at) if finished and row.finished_at else now
        seconds = max((end - _aware(row.started_at)).total_seconds(), 0.001)
        rate = done / seconds
        if not finished:
            eta = int((total - done) / rate) if rate > 0 else None
    return {
        "id": row.id,
        "status": row.status.value,
        "error": row.error,
        "filename": row.filename,
        "total_rows": total,
        "processed_rows": done,
        "percent": percent,
        "rows_per_second": round(rate) if rate is not None else None,
        "eta_seconds": eta,
        "counts": {
            "created": row.rows_created,
            "updated": row.rows_updated,
            "skipped": row.rows_skipped,
            "refused": row.rows_refused,
            "invalid": row.rows_invalid,
            "mails_queued": row.mails_queued,
        },
        "finished": finished,
    }
