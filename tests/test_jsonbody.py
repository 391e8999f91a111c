"""JSON bodies from outside: a small body of deeply nested brackets is a clear 400 on every
route that reads JSON, never a RecursionError (500) in the parser or in what walks it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from sendgrid_sink.signing import new_private_key
from service import db
from service.jsonbody import MAX_DEPTH, TooDeep, loads
from service.models import ConsentRecord, Subscriber, WebhookBatch, WebhookEventKey
from tests import factories
from tests.webhooks.events import URL as WEBHOOK_URL
from tests.webhooks.events import Signer

DEEP = "[" * 10_000 + "]" * 10_000  # 20 KB
SIGNER = Signer(new_private_key())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_app(sendgrid_webhook_public_key=SIGNER.public_key_b64)
    with app.app_context():
        yield app


def stored_nothing() -> bool:
    session = db.session()
    return all(session.scalar(select(func.count()).select_from(model)) == 0
               for model in (Subscriber, ConsentRecord, WebhookBatch, WebhookEventKey))


def test_the_loader_bounds_nesting() -> None:
    assert loads(nested(MAX_DEPTH)) == loads(nested(MAX_DEPTH))
    assert loads('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    for body in (nested(MAX_DEPTH + 1), DEEP, DEEP.encode(),
                 '{"email": "a@example.org", "x": ' + nested(5_000) + "}"):
        with pytest.raises(TooDeep, match=f"more than {MAX_DEPTH} levels"):
            loads(body)
    with pytest.raises(ValueError):
        loads("{not json")


@pytest.mark.parametrize("body", [
    DEEP,
    '{"email": "a@example.org", "lists": ["newsletter"], "first_name": ' + DEEP + "}",
    '{"email": "a@example.org", "lists": ' + nested(MAX_DEPTH + 1) + "}",
])
def test_public_signup(client, body: str) -> None:
    answer = client.post("/api/v1/subscriptions", data=body, content_type="application/json")
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.json == {"errors": {"json": [f"Nested more than {MAX_DEPTH} levels deep."]}}
    assert stored_nothing()


def test_signed_webhook(client) -> None:
    body = DEEP.encode()
    answer = client.post(WEBHOOK_URL, data=body, headers=SIGNER.headers(body))
    assert answer.status_code == 400
    assert answer.json == {"error": f"Nested more than {MAX_DEPTH} levels deep."}
    event = b'[{"event": "open", "email": "a@example.org", "x": %s}]' % nested(900).encode()
    answer = client.post(WEBHOOK_URL, data=event, headers=SIGNER.headers(event))
    assert answer.status_code == 400
    assert stored_nothing()


def test_reasonable_nesting_still_reaches_validation(client) -> None:
    """Within the bound a wrong shape is the schema's 422, as before."""
    body = '{"email": "a@example.org", "lists": ["newsletter"], "source": ' + nested(10) + "}"
    answer = client.post("/api/v1/subscriptions", data=body, content_type="application/json")
    assert answer.status_code == 422 and "source" in answer.json["errors"]


def route_urls(app: Flask) -> Iterator[tuple[str, str]]:
    """(method, url) of every route that takes a body, path values filled in."""
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        values: dict[str, Any] = {name: 1 if isinstance(conv, IntegerConverter) else "x"
                                  for name, conv in rule._converters.items()}
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            yield method, adapter.build(rule.endpoint, values, method=method)


@pytest.mark.parametrize("body", [DEEP, "[1]", "null", '"text"', "1e999", "{"])
def test_every_route_that_takes_a_body(app, client, body: str) -> None:
    """Staff (a token of the highest role) and strangers alike: never a 500."""
    headers = {**factories.bearer(factories.api_token("admin")),
               **SIGNER.headers(body.encode())}
    seen = 0
    for method, url in route_urls(app):
        answer = client.open(url, method=method, data=body, headers=headers)
        assert answer.status_code < 500, (method, url, answer.status_code)
        if body == DEEP and (url == WEBHOOK_URL or url.startswith("/api/") and method != "DELETE"):
            # refused as JSON (400), or no such row / not a JSON route (a CSV upload)
            assert answer.status_code in (400, 404, 422), (method, url, answer.status_code)
        seen += 1
    assert seen > 30
