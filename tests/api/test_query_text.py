"""A NUL byte (or another control character) in a filter or a list name of the staff API
is refused with 422, never a server error (PostgreSQL cannot even compare such text)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

Headers = Callable[[str], dict[str, str]]


@pytest.mark.parametrize("query", [
    "list=news%00letter", "email=a%00@example.org", "list=%1b", "email=%7f",
])
def test_subscriber_filters_refuse_control_characters(
    client: FlaskClient, api_token: Headers, query: str,
) -> None:
    answer = client.get(f"/api/v1/subscribers?{query}", headers=api_token("viewer"))
    assert answer.status_code == 422, answer.text
    assert query.split("=")[0] in str(answer.get_json()["errors"])


def test_a_list_name_with_a_nul_byte_is_an_unknown_list(
    client: FlaskClient, api_token: Headers,
) -> None:
    staff = api_token("admin")
    export = client.get("/api/v1/subscribers/export.csv?list=newsletter%00", headers=staff)
    assert export.status_code == 422 and "Unknown list." in str(export.get_json()["errors"])
    upload = client.post("/api/v1/imports", headers=staff, content_type="multipart/form-data",
                         data={"list": "newsletter\x00", "file": (b"email\n", "a.csv")})
    assert upload.status_code == 422 and "Unknown list." in str(upload.get_json()["errors"])
    campaign = client.post("/api/v1/campaigns", headers=staff, json={
        "name": "x", "kind": "alert", "subject": "s", "body": "b", "lists": ["a\x00"]})
    assert campaign.status_code == 422 and "lists" in campaign.get_json()["errors"]
