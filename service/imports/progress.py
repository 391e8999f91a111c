"""An import as staff see it: the API's summary, and the admin poller's rate and ETA."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import Import, ImportStatus


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def import_summary(row: Import, report_url: str) -> dict[str, Any]:
    """What the API and the admin show of an import: status, rows, counts, its report."""
    total = row.total_rows
    processed = min(row.processed_rows, total) if total else row.processed_rows
    return {
        "id": row.id,
        "list": row.mailing_list.slug,
        "filename": row.filename,
        "confirmed": row.confirmed,
        "consent_note": row.consent_note,
        "status": row.status.value,
        "error": row.error,
        "rows": {"processed": processed, "total": total},
        "progress": 1.0 if row.status.value == "done" else (
            round(processed / total, 4) if total else 0.0),
        "counts": {
            "created": row.rows_created, "updated": row.rows_updated,
            "skipped": row.rows_skipped, "refused": row.rows_refused,
            "invalid": row.rows_invalid,
        },
        "mails_queued": row.mails_queued,
        "report_url": report_url,
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def import_progress(row: Import, report_url: str,
                    now: datetime | None = None) -> dict[str, Any]:
    """`import_summary` with percent, rows/s and ETA (what a progress bar shows)."""
    out = import_summary(row, report_url)
    done, total = out["rows"]["processed"], out["rows"]["total"]
    finished = row.status in (ImportStatus.done, ImportStatus.failed)
    rate: float | None = None
    eta: int | None = None
    if row.started_at is not None and done:
        now = now or datetime.now(UTC)
        end = _aware(row.finished_at) if finished and row.finished_at else now
        rate = done / max((end - _aware(row.started_at)).total_seconds(), 0.001)
        if not finished and rate > 0:
            eta = int((total - done) / rate)
    return {
        **out,
        "processed_rows": done,
        "total_rows": total,
        "percent": round(100.0 * out["progress"], 1),
        "rows_per_second": round(rate) if rate is not None else None,
        "eta_seconds": eta,
        "counts": {**out["counts"], "mails_queued": out["mails_queued"]},
        "finished": finished,
    }
