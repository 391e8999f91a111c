"""Staff templates are bounded (time, memory, output, range sizes) and their runtime errors
are refused with a 422 naming the problem: in the API, in the admin's previews, for a test
send, and at send time the campaign fails cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.campaigns import render
from service.models import AuditRecord, Campaign, CampaignStatus
from tests import factories
from tests.factories import subscribers

from .api_calls import create, get

Headers = Callable[[str], dict[str, str]]

# Each: a body, and a piece of the message the answer must carry.
RUNTIME_ERRORS = [
    ("{{ 1/0 }}", "division by zero"),
    ("{{ [].pop() }}", "pop"),
    ("{% include 'base.html' %}", "cannot include"),
    ("{% import 'macros.html' as m %}", "cannot include"),
    ("{% extends 'layout.html' %}", "cannot include"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "Template error"),
    ("{{ 'a' + 1 }}", "Template error"),
    ("{{ 10.0 ** 1000 }}", "Template error"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "Template error"),
    ("{{ '\u202e' ~ (1 // 0) }}", "Template error"),
]

# Each: a body that would tie up the process, and a piece of the message.
RESOURCE_BOMBS = [
    ("{{ 'x' * 10**9 }}", "memory"),
    ("{{ range(10**9) | list | length }}", "range"),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
     "longer than"),
    ("{% for a in range(5000) %}{{ 'y' * 5000 }}{% endfor %}", "characters"),
    ("{{ 'x' | center(10**9) }}", "memory"),
    ("{{ (9 ** (9 ** 9)) % 7 }}", "The template"),  # time or memory, whichever first
    ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s | length }}", "The template"),
]


@pytest.fixture(autouse=True)
def _short_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RENDER_SECONDS", 1.0)


@pytest.mark.parametrize(("body", "message"), RUNTIME_ERRORS + RESOURCE_BOMBS)
def test_the_api_refuses_templates_that_fail_or_exhaust_with_their_message(
    client: FlaskClient, api_token: Headers, body: str, message: str,
) -> None:
    editor = api_token("editor")
    started = time.monotonic()
    answer = client.post("/api/v1/campaigns", headers=editor, json={
        "name": "x", "kind": "alert", "subject": "s", "body": body, "lists": ["newsletter"]})
    assert answer.status_code == 422, answer.text
    errors = answer.get_json()["errors"]
    assert message in str(errors["body"]), errors
    assert time.monotonic() - started < 10
    # The same in a subject, in a Spanish version and through PATCH; nothing is stored.
    cid = create(client, editor)["id"]
    for payload in ({"subject": body}, {"variants": {"es": {"subject": "s", "body": body}}}):
        patched = client.patch(f"/api/v1/campaigns/{cid}", headers=editor, json=payload)
        assert patched.status_code == 422, patched.text
        assert message in str(patched.get_json()["errors"])
    assert get(client, editor, cid)["body"] != body
    assert db.session().scalar(select(Campaign.id).where(Campaign.body == body)) is None


def test_a_test_send_of_a_template_that_cannot_render_is_refused(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
) -> None:
    staff = api_token("campaigner")
    stored = factories.campaign("Old", body=RESOURCE_BOMBS[0][0], lists=["newsletter"])
    answer = client.post(f"/api/v1/campaigns/{stored.id}/test", headers=staff,
                         json={"emails": ["me@example.org"]})
    assert answer.status_code == 422 and "memory" in str(answer.get_json()["errors"])
    run_jobs()
    assert not sink.messages()


@pytest.mark.parametrize(("body", "message"), [RUNTIME_ERRORS[0], RESOURCE_BOMBS[0]])
def test_a_campaign_whose_template_fails_at_send_time_fails_cleanly(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
    body: str, message: str,
) -> None:
    subscribers(7)
    staff = api_token("campaigner")
    stored = factories.campaign("Old", body=body, lists=["newsletter"])
    assert client.post(f"/api/v1/campaigns/{stored.id}/send", headers=staff).status_code == 202
    run_jobs()
    db.session().rollback()
    campaign = db.session().get(Campaign, stored.id)
    assert campaign is not None and campaign.status == CampaignStatus.failed
    assert message in campaign.status_reason
    assert not sink.messages()
    assert db.session().scalar(select(AuditRecord.id).where(
        AuditRecord.action == "campaign.fail")) is not None


def test_ordinary_templates_still_render_quickly(client: FlaskClient, api_token: Headers) -> None:
    editor = api_token("editor")
    body = ("{% for i in range(3) %}{{ i }}{% endfor %} {{ first_name | default('friend') }}"
            " {% if state == 'CA' %}CA{% endif %} {{ 'a' * 3 }}")
    started = time.monotonic()
    for _ in range(20):
        create(client, editor, body=body)
    assert time.monotonic() - started < 10
    assert render.fill_template(body).startswith("012 -@first_name@-")
