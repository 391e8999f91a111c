"""Shared set-up for the self-service tests: subscribers made through the real signup path."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.models import ConsentRecord, MailingList, Subscriber, Subscription

ONE_CLICK = "List-Unsubscribe=One-Click"


def confirmed_subscriber(client: FlaskClient, run_jobs: Any, sink: Any, email: str,
                         lists: list[str], lang: str = "en", **fields: str) -> Subscriber:
    """Sign up and confirm through the public pages, as a person would."""
    response = client.post("/subscribe", data={"email": email, "lists": lists, "lang": lang,
                                               **fields})
    assert response.status_code == 303, response.get_data(as_text=True)
    run_jobs()
    text = next(m["text"] for m in sink.messages() if m["to"][0]["email"].lower() == email.lower())
    match = re.search(r"http://localhost(/confirm/[A-Za-z0-9_.\-]+)", text)
    assert match, text
    assert client.post(match.group(1)).status_code == 200
    sink.clear()
    session = db.session()
    session.expire_all()
    return session.scalars(select(Subscriber).where(Subscriber.email_key == email.lower())).one()


def list_ids(*slugs: str) -> list[int]:
    return [
        ml.id for ml in db.session().scalars(
            select(MailingList).where(MailingList.slug.in_(slugs)).order_by(MailingList.id)
        )
    ]


def statuses(subscriber_id: int) -> dict[str, str]:
    session = db.session()
    session.expire_all()
    return {
        s.mailing_list.slug: s.status.value
        for s in session.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    }


def actions(subscriber_id: int) -> list[tuple[str, str]]:
    session = db.session()
    session.expire_all()
    return [
        (c.action, c.note)
        for c in session.scalars(
            select(ConsentRecord).where(ConsentRecord.subscriber_id == subscriber_id)
            .order_by(ConsentRecord.id)
        )
    ]


def path_of(url: str) -> str:
    assert url.startswith("http://localhost/"), url
    return url[len("http://localhost"):]
