"""GDPR: export everything we hold about a subscriber, and erase it.

Erase deletes the subscriber row; subscriptions, consent records and confirmation-mail
rows go with it (ON DELETE CASCADE), deliveries keep their counts with the subscriber
set to NULL. What remains is a `Suppression(reason=erased, email="")` holding only the
keyed hash of the normalised address, so imports and staff additions refuse the address
(`is_erased_or_suppressed`) while the person's own fresh signup still works as new
consent (`is_suppressed(..., include_erased=False)`); when that new signup is confirmed,
`forget_erasure` removes the marker.

Both need a fresh proof of the mailbox (`proof_is_fresh`): preferences links never
expire (every mail carries one, and changing one's lists must keep working), but old
mails get forwarded, archived and read by others. So exporting and erasing take a link
mailed within `PREFERENCES_FRESH_DAYS`; with an older one the preference centre still
changes lists, language and name, and offers to mail a new link to the address.

The erasure itself is recorded without personal data: an `AuditRecord` (actor
`subscriber`) and the suppression row's note carry the time and channel. A consent
record would be deleted together with the person it belongs to.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import config
from ..audit import record
from ..db import utcnow
from ..models import (
    Campaign,
    Delivery,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from ..outbound import SUBSCRIBER_ERASED, emit
from ..subscribers import Evidence, consent_record_data, email_hash

EXPORT_FORMAT = "actionlist.subscriber-export.v1"


def proof_is_fresh(mailed_at: datetime) -> bool:
    """Whether a link mailed at `mailed_at` may still export and erase."""
    age = utcnow() - mailed_at
    return age <= timedelta(days=config.settings().preferences_fresh_days)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one subscriber, as JSON-ready data."""
    subscriptions = session.scalars(
        select(Subscription)
        .where(Subscription.subscriber_id == subscriber.id)
        .order_by(Subscription.list_id)
    )
    deliveries = session.execute(
        select(Delivery, Campaign.name, Campaign.subject)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    )
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "profile": {
            "id": subscriber.id,
            "email": subscriber.email,
            "first_name": subscriber.first_name,
            "last_name": subscriber.last_name,
            "postal_code": subscriber.postal_code,
            "state": subscriber.state,
            "county": subscriber.county,
            "timezone": subscriber.timezone,
            "locale": subscriber.locale,
            "status": subscriber.status.value,
            "attributes": subscriber.attributes,
            "tags": sorted(row.tag for row in subscriber.tag_rows),
            "created_at": _iso(subscriber.created_at),
            "updated_at": _iso(subscriber.updated_at),
        },
        "subscriptions": [
            {
                "list": sub.mailing_list.slug,
                "name": sub.mailing_list.name_en,
                "status": sub.status.value,
                "created_at": _iso(sub.created_at),
                "confirmed_at": _iso(sub.confirmed_at),
                "unsubscribed_at": _iso(sub.unsubscribed_at),
            }
            for sub in subscriptions
        ],
        "consent_records": [
            {**consent_record_data(c), "at": _iso(c.at)} for c in subscriber.consent_records
        ],
        "deliveries": [
            {
                "campaign": name,
                "subject": subject,
                "status": delivery.status.value,
                "sent_at": _iso(delivery.sent_at),
                "last_event": delivery.event_status,
            }
            for delivery, name, subject in deliveries
        ],
    }


def erase(session: Session, subscriber: Subscriber, evidence: Evidence) -> None:
    """Delete the person, keep only the keyed hash of the address. The caller commits."""
    digest = email_hash(subscriber.email)
    when = utcnow()
    # The receivers learn who went (id and keyed hash) and from which lists; not the address.
    emit(session, SUBSCRIBER_ERASED, {
        "subscriber_id": subscriber.id,
        "email_hash": digest,
        "lists": sorted(sub.mailing_list.slug for sub in subscriber.subscriptions
                        if sub.status != SubscriptionStatus.unsubscribed),
    })
    existing = session.scalars(select(Suppression).where(Suppression.email_hash == digest)).first()
    if existing is None:
        session.add(
            Suppression(
                email_hash=digest,
                email="",
                reason=SuppressionReason.erased,
                source=evidence.endpoint or "preferences",
                note=f"erased at the subscriber's request on {when.date().isoformat()}",
            )
        )
    elif existing.reason != SuppressionReason.erased:
        # A bounce or complaint keeps blocking; only the readable address goes.
        existing.email = ""
    record(
        session,
        actor=evidence.actor,  # "subscriber", or "staff:<email>" from the admin
        action="subscriber.erase",
        object_type="subscriber",
        object_id=subscriber.id,
        detail={"channel": evidence.endpoint or "preferences"},
    )
    # Campaign ledgers keep their rows (counts stay exact) but no longer name the person;
    # deliveries have no foreign key to do this (see `Delivery`).
    # (`campaign_id IN campaigns` lets PostgreSQL find the rows through the
    # (campaign_id, subscriber_id) key: deliveries have no index on subscriber_id alone.)
    session.execute(
        update(Delivery).where(Delivery.campaign_id.in_(select(Campaign.id)),
                               Delivery.subscriber_id == subscriber.id)
        .values(subscriber_id=None).execution_options(synchronize_session=False)
    )
    session.delete(subscriber)
