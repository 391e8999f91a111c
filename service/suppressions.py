"""Staff actions on the suppression list: suppress an address by hand, lift a suppression.

The webhook's effects add bounces and spam reports, erasure adds `erased` entries; this
module is what the API (and any later admin page or command) calls for the manual ones.
Nothing here commits: the caller does.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit import record
from .models import Subscriber, SubscriberStatus, Suppression, SuppressionReason
from .subscribers import email_hash, email_key, normalise_email


class AlreadySuppressed(Exception):
    """The address is on the list already."""


class ErasureIsFinal(Exception):
    """An erasure's suppression cannot be lifted."""


def suppress_by_hand(session: Session, address: str, note: str, actor: str) -> Suppression:
    """Add `address` with reason `manual`. Raises InvalidEmail or AlreadySuppressed."""
    email = normalise_email(address)
    digest = email_hash(email)
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)):
        raise AlreadySuppressed("This address is already suppressed.")
    suppression = Suppression(email_hash=digest, email=email, reason=SuppressionReason.manual,
                              source=actor[:100], note=note)
    session.add(suppression)
    session.flush()
    record(session, actor=actor, action="suppression.add", object_type="suppression",
           object_id=suppression.id, detail={"reason": "manual", "note": note})
    return suppression


def lift(session: Session, suppression: Suppression, reason: str, actor: str) -> bool:
    """Remove a suppression, keeping `reason` in the audit. A bounced or complained
    subscriber becomes active again (their subscriptions stay as they are); returns
    whether one did. Raises ErasureIsFinal for an erasure."""
    if suppression.reason == SuppressionReason.erased:
        raise ErasureIsFinal("An erasure cannot be undone.")
    subscriber: Subscriber | None = None
    if suppression.email:
        subscriber = session.scalars(
            select(Subscriber)
            .where(Subscriber.email_key == email_key(suppression.email))
            .execution_options(populate_existing=True)
        ).first()
    reactivated = False
    if subscriber is not None and subscriber.status != SubscriberStatus.active:
        subscriber.status = SubscriberStatus.active
        reactivated = True
    record(
        session, actor=actor, action="suppression.remove", object_type="suppression",
        object_id=suppression.id,
        detail={"reason": reason, "suppression_reason": suppression.reason.value,
                "email_hash": suppression.email_hash, "subscriber_reactivated": reactivated},
    )
    session.delete(suppression)
    return reactivated
