"""POST /webhooks/sendgrid: verify, store the batch as it came, queue its processing."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from flask import Blueprint, jsonify, request

from .. import db
from ..extensions import csrf
from ..observability import metrics
from ..webhooks.effects import has_pending_events, queue_processing
from ..webhooks.ingest import MalformedBatch, parse_events, store_batch
from ..webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRejected, verifier

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)


def _answer(status: int, **body: Any) -> Any:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.route("/webhooks/sendgrid", methods=["POST"])
@csrf.exempt
def sendgrid_events() -> Any:
    """SendGrid's signed Event Webhook.

    Only storage happens here (the body, as one row), so SendGrid gets its 2xx quickly
    and a failure while applying effects loses nothing; a job on `default` splits the
    batch, drops the events seen before and applies the rest. The answer says how many
    events came and how many were queued (0 when the same body is already waiting).
    """
    check = verifier()
    if check is None:
        return _answer(503, error="The event webhook is not configured.")
    raw = request.get_data(cache=False)
    try:
        check.verify(raw, request.headers.get(SIGNATURE_HEADER, ""),
                     request.headers.get(TIMESTAMP_HEADER, ""))
    except SignatureRejected as exc:
        log.warning("webhook refused: %s", exc)
        metrics().webhook_events.labels("", "rejected").inc()
        return _answer(403, error="Signature verification failed.")
    try:
        events = parse_events(raw)
    except MalformedBatch as exc:
        return _answer(400, error=str(exc))
    session = db.session()
    queued = bool(events) and store_batch(session, raw, events)
    # Also when the body was already waiting: SendGrid retrying a batch whose job was
    # never queued (e.g. Redis was down) must not leave it stuck.
    if queued or has_pending_events(session):
        queue_processing(session)
    session.commit()
    for name, n in Counter(str(e.get("event", ""))[:32] for e in events).items():
        metrics().webhook_events.labels(name, "received").inc(n)
    return _answer(200, received=len(events), queued=len(events) if queued else 0)
