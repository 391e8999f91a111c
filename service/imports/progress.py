"""An import's progress for the admin page's poller: the API's view of it, plus rate and ETA."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import Import, ImportStatus
from .api import import_out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def import_progress(row: Import, now: datetime | None = None) -> dict[str, Any]:
    """`import_out(row)` with percent, rows/s and ETA (what a progress bar shows)."""
    out = import_out(row)
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
