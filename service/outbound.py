"""Outgoing webhook events, written in the same transaction as the change they report.

This is the transactional outbox of the outgoing webhooks (`service/outgoing/` delivers
them). A domain function that confirms, unsubscribes, erases, suppresses after a bounce
or complaint, or finishes a campaign calls `emit(...)` before its caller commits: the
event row and one outbox row per endpoint that wants the event go into the same
transaction as the change. A crash after the commit and before the delivery job is
queued loses nothing (the sweep finds the row); a rollback leaves no event behind.

Nothing is written when no enabled endpoint wants the type: there is nobody to tell.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import (
    Campaign,
    MailingList,
    OutgoingDelivery,
    OutgoingEndpoint,
    OutgoingEvent,
    Subscriber,
)
from .queue import enqueue_after_commit

SUBSCRIBER_CONFIRMED = "subscriber.confirmed"
SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed"
SUBSCRIBER_ERASED = "subscriber.erased"
SUBSCRIBER_BOUNCED = "subscriber.bounced"
SUBSCRIBER_COMPLAINED = "subscriber.complained"
CAMPAIGN_SENT = "campaign.sent"
EVENT_TYPES = (SUBSCRIBER_CONFIRMED, SUBSCRIBER_UNSUBSCRIBED, SUBSCRIBER_ERASED,
               SUBSCRIBER_BOUNCED, SUBSCRIBER_COMPLAINED, CAMPAIGN_SENT)
# The test event staff can send from the admin or the API (to one endpoint only).
TEST_EVENT = "test"

DELIVER_JOB = "service.jobs.outgoing.deliver"
# Webhooks never hold up mail: they wait behind transactional mail and campaigns.
DELIVERY_QUEUE = "default"


def new_public_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def delivery_job_id(delivery_id: int, attempts: int) -> str:
    """The job of a delivery's next attempt: the sweep looks for it in Redis."""
    return f"outgoing-{delivery_id}-{attempts}"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _list_slugs(lists: Iterable[MailingList]) -> list[str]:
    return sorted({ml.slug for ml in lists})


def subscriber_data(subscriber: Subscriber, lists: Iterable[MailingList],
                    **extra: Any) -> dict[str, Any]:
    return {"subscriber_id": subscriber.id, "email": subscriber.email,
            "lists": _list_slugs(lists), **extra}


def _enabled_endpoints(session: Session) -> list[tuple[int, list[str]]]:
    """The enabled endpoints and their event types, read once per transaction (the Event
    Webhook applies thousands of events in one)."""
    transaction = session.get_transaction()
    cached = session.info.get("outgoing_endpoints")
    if cached is not None and cached[0] is transaction:
        endpoints: list[tuple[int, list[str]]] = cached[1]
        return endpoints
    endpoints = [(endpoint_id, list((events or {}).get("types", [])))
                 for endpoint_id, events in session.execute(
                     select(OutgoingEndpoint.id, OutgoingEndpoint.events)
                     .where(OutgoingEndpoint.enabled.is_(True)))]
    session.info["outgoing_endpoints"] = (session.get_transaction(), endpoints)
    return endpoints


def wanted(session: Session, *event_types: str) -> bool:
    """Whether an enabled endpoint takes any of these event types (set-based shortcuts
    that emit nothing per person must then step aside)."""
    return any(event_type in types for _id, types in _enabled_endpoints(session)
               for event_type in event_types)


def emit(session: Session, event_type: str, data: dict[str, Any], *,
         endpoint_ids: Iterable[int] | None = None) -> OutgoingEvent | None:
    """Write the event and its outbox rows in `session` (committed by the caller) and
    queue one delivery job per row after the commit.

    `endpoint_ids` (the test event) names the endpoints; otherwise every enabled endpoint
    subscribed to `event_type` gets it.
    """
    if endpoint_ids is not None:
        targets = list(session.scalars(
            select(OutgoingEndpoint.id).where(OutgoingEndpoint.id.in_(list(endpoint_ids)))))
    else:
        targets = [endpoint_id for endpoint_id, types in _enabled_endpoints(session)
                   if event_type in types]
    if not targets:
        return None
    event = OutgoingEvent(public_id=new_public_id(), type=event_type, data=data)
    session.add(event)
    session.flush()
    rows = [OutgoingDelivery(event_id=event.id, endpoint_id=endpoint_id,
                             next_attempt_at=event.created_at) for endpoint_id in targets]
    session.add_all(rows)
    session.flush()
    for row in rows:
        enqueue_after_commit(session, DELIVER_JOB, row.id, queue=DELIVERY_QUEUE,
                             job_id=delivery_job_id(row.id, 0), timeout=120)
    return event


def emit_for_subscriber(session: Session, event_type: str, subscriber: Subscriber,
                        lists: Iterable[MailingList], **extra: Any) -> OutgoingEvent | None:
    return emit(session, event_type, subscriber_data(subscriber, lists, **extra))


def emit_campaign_sent(session: Session, campaign: Campaign,
                       counts: dict[str, int]) -> OutgoingEvent | None:
    return emit(session, CAMPAIGN_SENT, {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "kind": campaign.kind.value,
        "lists": _list_slugs(campaign.lists),
        "counts": dict(counts),
    })
