"""Outgoing webhook fixtures: an app that may post to 127.0.0.1 with retries in fractions
of a second, a receiver, an endpoint registered through the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from sendgrid_sink.signing import new_private_key
from service import db
from tests.webhooks.events import Signer

from . import receiver as receivers

# Retries after 0.2, 0.4, 0.8 ... s; an endpoint failing for 3 s is disabled.
FAST = {"webhooks_allow_private": True, "webhooks_retry_base_seconds": 0.2,
        "webhooks_disable_after_seconds": 3, "webhooks_timeout": 2.0}


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer(new_private_key())


@pytest.fixture
def app(make_app: Callable[..., Flask], signer: Signer) -> Iterator[Flask]:
    app = make_app(sendgrid_webhook_public_key=signer.public_key_b64, **FAST)
    with app.app_context():
        yield app


@pytest.fixture
def receiver() -> Iterator[receivers.Receiver]:
    found = receivers.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def admin(api_token: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return api_token("admin")


@pytest.fixture
def endpoint(client: FlaskClient, admin: dict[str, str],
             receiver: receivers.Receiver) -> dict[str, Any]:
    """An endpoint for every event, pointing at the receiver (which checks its secret)."""
    from service.outbound import EVENT_TYPES

    response = client.post("/api/v1/webhooks", headers=admin,
                           json={"url": receiver.url, "events": list(EVENT_TYPES)})
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    receiver.secret = data["secret"]
    return data


def fresh() -> Session:
    """The test's session, out of any old snapshot (jobs commit in other sessions)."""
    session = db.session()
    session.rollback()
    session.expire_all()
    return session


def wait_for(check: Callable[[], Any], run_jobs: Callable[..., None], *,
             timeout: float = 20.0) -> Any:
    """Run due jobs until `check()` is truthy; retries due within 2 s run at once."""
    deadline = time.monotonic() + timeout
    while True:
        run_jobs(due_within=2)
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
