"""Webhook fixtures: a key pair made in the test, a signer, an app that trusts the key.

The signing itself is the sink's (`sendgrid_sink.signing`): the tests sign exactly as the
sink does when it posts events back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sendgrid_sink.signing import new_private_key, public_key_b64, signature_headers
from service import db
from service.models import (
    Campaign,
    CampaignKind,
    Delivery,
    DeliveryStatus,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

URL = "/webhooks/sendgrid"


@dataclass
class Signer:
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.private_key)

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        return {"Content-Type": "application/json",
                **signature_headers(self.private_key, body, timestamp)}


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer(new_private_key())


@pytest.fixture
def app(make_app: Callable[..., Flask], signer: Signer) -> Iterator[Flask]:
    app = make_app(sendgrid_webhook_public_key=signer.public_key_b64)
    with app.app_context():
        yield app


@pytest.fixture
def post_events(client: FlaskClient, signer: Signer) -> Callable[..., TestResponse]:
    def post(events: list[dict[str, Any]] | bytes, **kwargs: Any) -> TestResponse:
        body = events if isinstance(events, bytes) else json.dumps(events).encode() + b"\r\n"
        return client.post(URL, data=body, headers=signer.headers(body, **kwargs))

    return post


@dataclass
class Sent:
    campaign_id: int
    subscriber_ids: list[int]
    emails: list[str]


@pytest.fixture
def sent_campaign(app: Flask) -> Callable[..., Sent]:
    """A campaign 'sent' to n confirmed subscribers of action-alerts (deliveries sent)."""

    def make(n: int = 2, lists: tuple[str, ...] = ("action-alerts",)) -> Sent:
        session = db.session()
        mailing_lists = [
            session.query(MailingList).filter_by(slug=slug).one() for slug in lists
        ]
        campaign = Campaign(name="Vote", kind=CampaignKind.alert, subject="Act now",
                            body="Call your rep", lists=mailing_lists)
        session.add(campaign)
        subscribers = []
        for i in range(n):
            s = Subscriber(email=f"person{i}@example.org", email_key=f"person{i}@example.org")
            s.subscriptions = [
                Subscription(mailing_list=ml, status=SubscriptionStatus.confirmed)
                for ml in session.query(MailingList).order_by(MailingList.id)
            ]
            subscribers.append(s)
        session.add_all(subscribers)
        session.flush()
        for s in subscribers:
            session.add(Delivery(campaign_id=campaign.id, subscriber_id=s.id,
                                 status=DeliveryStatus.sent, message_id=f"msg{s.id}"))
        session.commit()
        return Sent(campaign.id, [s.id for s in subscribers], [s.email for s in subscribers])

    return make


_counter = iter(range(1, 10**9))


def event(name: str, sent: Sent | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    """One SendGrid event as the webhook posts it (custom_args are top-level strings)."""
    n = next(_counter)
    data: dict[str, Any] = {
        "event": name,
        "email": sent.emails[index] if sent else f"stranger{n}@example.org",
        "timestamp": 1_790_000_000 + n,  # distinct per event, like real ones
        "sg_event_id": f"evt-{n}",
        "sg_message_id": f"msg-{index}.filter0001",
    }
    if sent is not None:
        data["campaign_id"] = str(sent.campaign_id)
        data["subscriber_id"] = str(sent.subscriber_ids[index])
    data.update(extra)
    return data


def json_body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode() + b"\r\n"
