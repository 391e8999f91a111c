"""Reading the database back in tests: counts, a person's subscriptions and ledger, and a
snapshot of everything an import may write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from service import db
from service.models import ConfirmationMail, ConsentRecord, Subscriber, Subscription


def count(model: Any) -> int:
    return int(db.session().scalar(select(func.count()).select_from(model)) or 0)


def statuses(subscriber_id: int) -> dict[str, str]:
    """{list slug: subscription status} of one subscriber, read afresh."""
    session = db.session()
    session.expire_all()
    return {
        s.mailing_list.slug: s.status.value
        for s in session.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    }


def actions(subscriber_id: int) -> list[tuple[str, str]]:
    """(action, note) of each of a subscriber's consent records, oldest first."""
    session = db.session()
    session.expire_all()
    return [
        (c.action, c.note)
        for c in session.scalars(
            select(ConsentRecord).where(ConsentRecord.subscriber_id == subscriber_id)
            .order_by(ConsentRecord.id)
        )
    ]


def snapshot() -> dict[str, Any]:
    """Everything an import may write, to compare before and after a second run."""
    session = db.session()
    session.expire_all()
    return {
        "subscribers": sorted(
            tuple(r) for r in session.execute(select(
                Subscriber.id, Subscriber.email, Subscriber.email_key, Subscriber.first_name,
                Subscriber.last_name, Subscriber.postal_code, Subscriber.state,
                Subscriber.locale, Subscriber.updated_at))
        ),
        "attributes": sorted(
            (i, sorted(a.items())) for i, a in session.execute(
                select(Subscriber.id, Subscriber.attributes))
        ),
        "subscriptions": sorted(
            tuple(r) for r in session.execute(select(
                Subscription.subscriber_id, Subscription.list_id, Subscription.status,
                Subscription.updated_at, Subscription.confirmed_at))
        ),
        "consent": count(ConsentRecord),
        "mails": count(ConfirmationMail),
    }
