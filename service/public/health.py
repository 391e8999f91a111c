"""Operations endpoints: `/healthz` (database and queue) and `/metrics` (Prometheus)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from .. import db
from ..observability import metrics
from ..queue import task_queue

bp = Blueprint("observability", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    checks: dict[str, str] = {}
    ok = True
    try:
        db.session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # a health check reports every failure, it never raises
        checks["database"] = f"error: {type(exc).__name__}"
        ok = False
    try:
        checks["queue"] = "ok" if task_queue().ping() else "error"
        ok = ok and checks["queue"] == "ok"
    except Exception as exc:
        checks["queue"] = f"error: {type(exc).__name__}"
        ok = False
    body = {"status": "ok" if ok else "error", **checks}
    return jsonify(body), (200 if ok else 503)


@bp.get("/metrics")
def prometheus() -> Response:
    m = metrics()
    try:
        for name, depth in task_queue().depth().items():
            m.queue_depth.labels(name).set(depth)
    except Exception:  # depth is best effort; the scrape must still answer
        logging.getLogger(__name__).warning("queue depth unavailable", exc_info=True)
    return Response(generate_latest(m.registry), mimetype=CONTENT_TYPE_LATEST)
