"""Seeding subscribers and driving campaigns through the API."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.db import utcnow
from service.models import MailingList, Subscriber, Subscription, SubscriptionStatus


def seed(n: int, *, list_slug: str = "newsletter", locale_es_every: int = 0,
         prefix: str = "person", state: str = "CA",
         status: SubscriptionStatus = SubscriptionStatus.confirmed) -> list[int]:
    session = db.session()
    ml = session.scalars(select(MailingList).where(MailingList.slug == list_slug)).one()
    ids = []
    for i in range(n):
        email = f"{prefix}{i}@example.com"
        sub = session.scalars(select(Subscriber).where(Subscriber.email_key == email)).first()
        if sub is None:
            locale = "es" if locale_es_every and i % locale_es_every == 0 else "en"
            sub = Subscriber(email=email, email_key=email, first_name=f"First{i}",
                             last_name="Last", state=state, postal_code=f"9{i:04d}",
                             locale=locale)
            session.add(sub)
            session.flush()
        session.add(Subscription(subscriber_id=sub.id, list_id=ml.id, status=status,
                                 confirmed_at=utcnow()))
        ids.append(sub.id)
    session.commit()
    return ids


def create(client: FlaskClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    payload = {
        "name": "Test campaign", "kind": "newsletter", "subject": "Hello {{ first_name }}",
        "body": "# News\n\nHi {{ first_name }} from {{ state }}. [Act](https://act.example.org/a)",
        "format": "markdown", "lists": ["newsletter"], **fields,
    }
    response = client.post("/api/v1/campaigns", json=payload, headers=headers)
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def get(client: FlaskClient, headers: dict[str, str], cid: int) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"/api/v1/campaigns/{cid}", headers=headers).get_json()
    return data


def to(message: dict[str, Any]) -> str:
    """The one recipient address of a sink record (campaigns send one `to` per personalization)."""
    (recipient,) = message["to"]
    address: str = recipient["email"]
    return address
