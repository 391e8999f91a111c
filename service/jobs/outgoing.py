"""Jobs of the outgoing webhooks (enqueued by name from `service.outbound` and
`service.outgoing.delivery`)."""

from __future__ import annotations

from typing import Any

from .. import db
from ..outgoing import delivery


def deliver(delivery_id: int, attempts: int = 0) -> str:
    """One attempt of one outbox row (skipped if another job has made it already)."""
    return delivery.deliver(db.session(), delivery_id, attempts)


def sweep(at_start: bool = False) -> dict[str, Any]:
    """Jobs for outbox rows whose job was lost (worker killed, Redis emptied, restart)."""
    return delivery.sweep(db.session(), at_start=at_start)


def sweep_at_start() -> dict[str, Any]:
    """The sweep of a process that has just started (the embedded mode's first request):
    it holds no job yet, so every due row has lost its job."""
    return delivery.sweep(db.session(), at_start=True)


def prune() -> int:
    """Forget events every endpoint has taken, once they are older than the delivery log
    keeps (`delivery.KEEP_DELIVERED`)."""
    return delivery.prune(db.session())
