"""Partial edits of a draft through PATCH, and the horizon of a scheduled send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .api_calls import create, get

Headers = Callable[[str], dict[str, str]]


def test_patch_changes_only_the_fields_it_names(client: FlaskClient, api_token: Headers) -> None:
    editor = api_token("editor")
    cid = create(client, editor, preheader="Tomorrow", format="html", body="<p>Hi</p>",
                 segment={"states": ["CA"], "postal_prefixes": [], "locales": []},
                 variants={"es": {"subject": "Hola", "body": "<p>Hola</p>"}},
                 source_code="nov26")["id"]
    before = get(client, editor, cid)
    for change in ({"name": "Renamed"}, {"subject": "New {{ first_name }}"},
                   {"lists": ["action-alerts"]}, {"body": "<p>Changed</p>"}, {}):
        answer = client.patch(f"/api/v1/campaigns/{cid}", headers=editor, json=change)
        assert answer.status_code == 200, answer.text
        before.update(change)
        after = answer.get_json()
        # Nothing else moved: no field fell back to its default.
        assert {k: after[k] for k in change} == change
        assert {k: v for k, v in after.items() if k not in ("counts",)} == {
            k: v for k, v in before.items() if k not in ("counts",)}
    # Still validated: a bad value of the one field sent is refused, nothing changes.
    for bad in ({"kind": "poster"}, {"lists": []}, {"name": ""}, {"subject": "{{ oops"},
                {"lists": ["nope"]}, {"segment": {"states": ["California"]}}):
        refused = client.patch(f"/api/v1/campaigns/{cid}", headers=editor, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        # (a segment's errors name the part: `segment.states`)
        named = next(iter(bad))
        assert any(key == named or key.startswith(f"{named}.")
                   for key in refused.get_json()["errors"]), refused.text
    assert get(client, editor, cid)["name"] == "Renamed"


def test_the_openapi_document_requires_nothing_of_a_patch(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    body = spec["paths"]["/api/v1/campaigns/{campaign_id}"]["patch"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert not spec["components"]["schemas"][ref].get("required")


@pytest.mark.parametrize("when", [
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-12:00", "2200-01-01T00:00:00+00:00",
    (datetime.now(UTC) + timedelta(days=366)).isoformat(),
], ids=["year-9999", "year-9999-west", "year-2200", "a-year-and-a-day"])
def test_a_send_more_than_a_year_ahead_is_refused(
    app: Flask, client: FlaskClient, api_token: Headers, when: str,
) -> None:
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    answer = client.post(f"/api/v1/campaigns/{cid}/send", headers=staff, json={"send_at": when})
    assert answer.status_code == 422, answer.text
    assert "365 days" in str(answer.get_json()["errors"]["send_at"])
    assert get(client, staff, cid)["status"] == "draft"
    # Within the year: scheduled.
    soon = (datetime.now(UTC) + timedelta(days=364)).isoformat()
    ok = client.post(f"/api/v1/campaigns/{cid}/send", headers=staff, json={"send_at": soon})
    assert ok.status_code == 202 and ok.get_json()["status"] == "scheduled"
