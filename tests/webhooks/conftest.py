"""Webhook fixtures: a key pair made in the test, a signer, an app that trusts the key."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sendgrid_sink.signing import new_private_key
from tests import factories

from .events import URL, Signer


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


@pytest.fixture
def sent_campaign(app: Flask) -> Callable[..., factories.Sent]:
    """A campaign 'sent' to n confirmed subscribers of action-alerts (deliveries sent)."""
    return factories.sent_campaign
