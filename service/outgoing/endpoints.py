"""Endpoints staff register: create (the secret is shown once), change, delete, list, the
delivery log and the test event. The API and the admin both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import config
from ..audit import record
from ..db import utcnow
from ..models import (
    OutgoingAttempt,
    OutgoingDelivery,
    OutgoingEndpoint,
    OutgoingEvent,
)
from ..outbound import EVENT_TYPES, TEST_EVENT, emit, iso
from .addresses import UrlRefused, check_url
from .delivery import enqueue_due
from .keys import new_secret

MAX_EVENTS = len(EVENT_TYPES)
LOG_PAGE = 100


class EndpointError(ValueError):
    """Bad input about an endpoint: `field` names the input, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_events(events: object) -> list[str]:
    if not isinstance(events, list) or not events:
        raise EndpointError("events", "Choose at least one event.")
    if len(events) > MAX_EVENTS * 2 or not all(isinstance(e, str) for e in events):
        raise EndpointError("events", "Events must be a list of event names.")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        shown = ", ".join(repr(e[:40]) for e in unknown[:3])
        raise EndpointError("events", f"Unknown event {shown}; known: {', '.join(EVENT_TYPES)}.")
    return [e for e in EVENT_TYPES if e in events]  # the canonical order, no repeats


def _url(url: object) -> str:
    try:
        return check_url(url, config.settings().webhooks_allow_private)
    except UrlRefused as exc:
        raise EndpointError("url", str(exc)) from exc


@dataclass(frozen=True)
class Created:
    endpoint: OutgoingEndpoint
    secret: str


def create(session: Session, url: object, events: object, actor: str) -> Created:
    """A new, enabled endpoint; the secret is returned here and never again."""
    checked_url = _url(url)
    types = check_events(events)
    secret, sealed = new_secret()
    endpoint = OutgoingEndpoint(
        url=checked_url, secret=sealed,
        events={"types": types}, enabled=True, created_by=str(actor)[:200],
    )
    session.add(endpoint)
    session.flush()
    record(session, actor=actor, action="webhook.create", object_type="webhook",
           object_id=endpoint.id, detail={"url": checked_url, "events": types})
    return Created(endpoint, secret)


def change(session: Session, endpoint: OutgoingEndpoint, changes: dict[str, Any],
           actor: str) -> OutgoingEndpoint:
    """Change `url`, `events` and/or `enabled`. Enabling again clears the failure clock
    and sends what waited in the outbox at once."""
    url = _url(changes["url"]) if "url" in changes else None
    types = check_events(changes["events"]) if "events" in changes else None
    enabled = changes.get("enabled")
    if "enabled" in changes and not isinstance(enabled, bool):
        raise EndpointError("enabled", "Must be true or false.")
    detail: dict[str, Any] = {}
    if url is not None and url != endpoint.url:
        endpoint.url = url
        detail["url"] = url
    if types is not None and types != endpoint.event_types:
        endpoint.events = {"types": types}
        detail["events"] = types
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        detail["enabled"] = enabled
        if enabled:
            endpoint.failing_since = None
            endpoint.disabled_at = None
            endpoint.disabled_reason = ""
            session.execute(
                update(OutgoingDelivery)
                .where(OutgoingDelivery.endpoint_id == endpoint.id,
                       OutgoingDelivery.status == "pending")
                .values(next_attempt_at=utcnow())
                .execution_options(synchronize_session=False))
        else:
            endpoint.disabled_at = utcnow()
            endpoint.disabled_reason = f"disabled by {actor}"[:1000]
    if detail:
        record(session, actor=actor, action="webhook.update", object_type="webhook",
               object_id=endpoint.id, detail=detail)
    if detail.get("enabled"):
        session.flush()
        enqueue_due(session, endpoint_id=endpoint.id)
    return endpoint


def delete(session: Session, endpoint: OutgoingEndpoint, actor: str) -> None:
    record(session, actor=actor, action="webhook.delete", object_type="webhook",
           object_id=endpoint.id, detail={"url": endpoint.url})
    session.delete(endpoint)


def all_endpoints(session: Session) -> list[OutgoingEndpoint]:
    return list(session.scalars(select(OutgoingEndpoint).order_by(OutgoingEndpoint.id)))


def send_test(session: Session, endpoint: OutgoingEndpoint, actor: str) -> OutgoingEvent:
    """A `test` event to this endpoint only (delivered, signed and retried like any)."""
    if not endpoint.enabled:
        raise EndpointError("enabled", "The endpoint is disabled: enable it first.")
    event = emit(session, TEST_EVENT, {"endpoint_id": endpoint.id,
                                       "message": "A test event from actionlist."},
                 endpoint_ids=[endpoint.id])
    assert event is not None
    record(session, actor=actor, action="webhook.test", object_type="webhook",
           object_id=endpoint.id, detail={"event": event.public_id})
    return event


def describe(endpoint: OutgoingEndpoint) -> dict[str, Any]:
    """The endpoint as staff see it: never the secret."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.event_types,
        "enabled": endpoint.enabled,
        "failing_since": iso(endpoint.failing_since) if endpoint.failing_since else None,
        "disabled_at": iso(endpoint.disabled_at) if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": iso(endpoint.created_at),
        "created_by": endpoint.created_by,
    }


def attempts(session: Session, endpoint_id: int, *, before: int | None = None,
             limit: int = LOG_PAGE) -> list[dict[str, Any]]:
    """The endpoint's delivery log, newest first."""
    query = (
        select(OutgoingAttempt, OutgoingEvent.public_id, OutgoingEvent.type)
        .join(OutgoingDelivery, OutgoingDelivery.id == OutgoingAttempt.delivery_id)
        .join(OutgoingEvent, OutgoingEvent.id == OutgoingDelivery.event_id)
        .where(OutgoingAttempt.endpoint_id == endpoint_id)
        .order_by(OutgoingAttempt.id.desc()).limit(limit)
    )
    if before is not None:
        query = query.where(OutgoingAttempt.id < before)
    return [
        {
            "id": attempt.id,
            "event_id": public_id,
            "type": event_type,
            "attempt": attempt.number,
            "at": iso(attempt.at),
            "status_code": attempt.status_code,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
            "ok": attempt.status_code is not None and 200 <= attempt.status_code < 300
            and not attempt.error,
        }
        for attempt, public_id, event_type in session.execute(query)
    ]


def waiting(session: Session, endpoint_id: int) -> int:
    """How many events wait in the outbox for this endpoint."""
    return int(session.scalar(
        select(func.count()).select_from(OutgoingDelivery)
        .where(OutgoingDelivery.endpoint_id == endpoint_id,
               OutgoingDelivery.status == "pending")) or 0)
