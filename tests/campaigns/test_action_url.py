"""A campaign's `action_url`: an http(s) address with a host, or nothing; anything else is a
422 naming the field and nothing is stored."""

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

HOSTILE: list[Any] = [
    "javascript:alert(1)",
    "ftp://example.org/file",
    "act.example.org/petition",  # no scheme
    "https://",  # no host
    "https:///path",
    "https://example.org/\x00",
    "https://example.org/a\nb",
    "https://exa mple.org/",
    "https://example.org/\u202egnp.exe",  # a right-to-left override
    "https://example.org:99999/",
    "https://" + "a" * 2000 + ".org/",
    "https://\ud800.example.org/",  # a lone surrogate
    123,
    ["https://example.org/"],
    {"url": "https://example.org/"},
    None,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_bad_action_url_is_refused_naming_the_field(
        client: FlaskClient, api_token: Headers, value: Any) -> None:
    editor = api_token("editor")
    payload = {"name": "x", "kind": "alert", "subject": "s", "body": "b",
               "lists": ["newsletter"], "action_url": value}
    created = client.post("/api/v1/campaigns", headers=editor, json=payload)
    assert created.status_code == 422, created.text
    assert "action_url" in created.get_json()["errors"]
    assert db.session().scalar(select(func.count()).select_from(Campaign)) == 0
    cid = create(client, editor, action_url="https://act.example.org/keep")["id"]
    before = get(client, editor, cid)
    patched = client.patch(f"/api/v1/campaigns/{cid}", headers=editor,
                           json={"action_url": value})
    assert patched.status_code == 422, patched.text
    assert "action_url" in patched.get_json()["errors"]
    assert get(client, editor, cid) == before


def test_action_url_is_stored_shown_changed_and_cleared(
        client: FlaskClient, api_token: Headers) -> None:
    editor = api_token("editor")
    created = create(client, editor, action_url="https://Act.example.org/petition?x=1")
    assert created["action_url"] == "https://Act.example.org/petition?x=1"
    assert created["paused_reason"] is None
    cid = created["id"]
    patched = client.patch(f"/api/v1/campaigns/{cid}", headers=editor,
                           json={"action_url": "http://act.example.org/rsvp"})
    assert patched.status_code == 200 and patched.get_json()["action_url"] == (
        "http://act.example.org/rsvp")
    assert create(client, editor)["action_url"] == ""  # none by default
    cleared = client.patch(f"/api/v1/campaigns/{cid}", headers=editor, json={"action_url": ""})
    assert cleared.get_json()["action_url"] == ""
