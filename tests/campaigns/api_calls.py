"""Driving campaigns through the HTTP API, and reading the sink's records of them."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def create(client: FlaskClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    payload = {
        "name": "Test campaign", "kind": "newsletter", "subject": "Hello {{ first_name }}",
        "body": "# News\n\nHi {{ first_name }} from {{ state }}. [Act](https://act.example.org/a)",
        "format": "markdown", "lists": ["newsletter"], **fields,
    }
    response = client.post("/api/v1/campaigns", json=payload, headers=headers)
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def get(client: FlaskClient, headers: dict[str, str], cid: int) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"/api/v1/campaigns/{cid}", headers=headers).get_json()
    return data


def to(message: dict[str, Any]) -> str:
    """The one recipient address of a sink record (campaigns send one `to` per personalization)."""
    (recipient,) = message["to"]
    address: str = recipient["email"]
    return address
