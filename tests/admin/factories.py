"""Rows for admin tests, written straight to the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from service import db
from service.db import utcnow
from service.models import MailingList, Subscriber, Subscription, SubscriptionStatus


def mailing_list(slug: str) -> MailingList:
    found = db.session().scalars(select(MailingList).where(MailingList.slug == slug)).one()
    return found


def subscriber(
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    state: str = "",
    locale: str = "en",
    lists: dict[str, SubscriptionStatus] | None = None,
    created_at: datetime | None = None,
    commit: bool = True,
) -> Subscriber:
    session = db.session()
    row = Subscriber(
        email=email, email_key=email.lower(), first_name=first_name, last_name=last_name,
        state=state, locale=locale, attributes={}, created_at=created_at or utcnow(),
    )
    session.add(row)
    for slug, status in (lists or {}).items():
        session.add(Subscription(subscriber=row, list_id=mailing_list(slug).id, status=status))
    if commit:
        session.commit()
    return row
