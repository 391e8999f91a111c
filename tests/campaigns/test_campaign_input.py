"""Control characters in a campaign's fields are refused with 422 naming the field (a NUL
byte was a server error on PostgreSQL); line breaks and tabs stay allowed where text has
lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service import db
from service.models import Campaign

from .api_calls import create, get

Headers = Callable[[str], dict[str, str]]

HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": "Rally\x00"}),
    ("name", {"name": "Rally\nBcc: all"}),
    ("subject", {"subject": "Hi\x00 there"}),
    ("subject", {"subject": "Hi\x1b[31m"}),
    ("preheader", {"preheader": "\x00"}),
    ("body", {"body": "Hello\x00"}),
    ("body", {"body": "Hello\x7f"}),
    ("source_code", {"source_code": "nov\x00"}),
    ("variants", {"variants": {"es": {"subject": "Hola\x00", "body": "b"}}}),
    ("variants", {"variants": {"es": {"subject": "Hola", "body": "b\x08"}}}),
    ("segment.states", {"segment": {"states": ["C\x00"]}}),
    ("segment.postal_prefixes", {"segment": {"postal_prefixes": ["94\x00"]}}),
    ("lists", {"lists": ["newsletter\x00"]}),
]


@pytest.mark.parametrize(("field", "change"), HOSTILE)
def test_control_characters_are_refused_naming_the_field(
    client: FlaskClient, api_token: Headers, field: str, change: dict[str, Any],
) -> None:
    editor = api_token("editor")
    payload = {"name": "x", "kind": "alert", "subject": "s", "body": "b",
               "lists": ["newsletter"], **change}
    created = client.post("/api/v1/campaigns", headers=editor, json=payload)
    assert created.status_code == 422, created.text
    assert field in created.get_json()["errors"], created.get_json()
    cid = create(client, editor)["id"]
    before = get(client, editor, cid)
    patched = client.patch(f"/api/v1/campaigns/{cid}", headers=editor, json=change)
    assert patched.status_code == 422, patched.text
    assert field in patched.get_json()["errors"]
    assert get(client, editor, cid) == before
    assert db.session().scalar(select(func.count()).select_from(Campaign)) == 1


def test_lines_and_tabs_stay_allowed_where_text_has_lines(
    client: FlaskClient, api_token: Headers,
) -> None:
    editor = api_token("editor")
    body = "# News\r\n\r\n\tIndented\nline"
    campaign = create(client, editor, body=body, subject="Hello\n{{ first_name }}",
                      preheader="Two\nlines",
                      variants={"es": {"subject": "Hola", "body": "Uno\n\tdos"}})
    assert campaign["body"] == body and campaign["variants"]["es"]["body"] == "Uno\n\tdos"
