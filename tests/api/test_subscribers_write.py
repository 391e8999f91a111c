"""The staff write API for subscribers: add (pending or confirmed), merge, edit, erase;
roles, refusals of suppressed and erased addresses, hostile values, and the places, tags
and attributes every read shows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from service import db
from service.models import (
    AuditRecord,
    ConfirmationMail,
    ConsentRecord,
    Subscriber,
    SubscriberTag,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from service.subscribers import email_hash
from tests import factories
from tests.factories import subscriber, suppression
from tests.queries import count

Headers = Callable[[str], dict[str, str]]
C = SubscriptionStatus.confirmed

NEW = {"email": "Ana@Example.org", "first_name": "Ana", "last_name": "Pérez",
       "postal_code": "11201-2345", "locale": "es", "attributes": {"cd": "NY-10"},
       "tags": ["Volunteer ", "donor"], "lists": ["newsletter"]}


def token(role: str, name: str) -> dict[str, str]:
    return factories.bearer(factories.api_token(role, name))


def nothing_stored_for(email: str) -> None:
    session = db.session()
    session.expire_all()
    assert session.scalars(select(Subscriber).where(Subscriber.email_key == email.lower())
                           ).first() is None


# ---------------------------------------------------------------- roles


def test_roles(client: FlaskClient, api_token: Headers) -> None:
    person = subscriber("x@example.org")
    assert client.post("/api/v1/subscribers", json=NEW).status_code == 401
    assert client.post("/api/v1/subscribers", json=NEW,
                       headers=api_token("viewer")).status_code == 403
    assert client.post("/api/v1/subscribers", json={**NEW, "confirmed": True,
                                                     "consent_note": "paper form"},
                       headers=api_token("editor")).status_code == 403
    for role in ("viewer", "editor"):
        assert client.patch(f"/api/v1/subscribers/{person.id}", json={"tags": ["a"]},
                            headers=api_token(role)).status_code == 403
    for role in ("viewer", "editor", "campaigner"):
        assert client.delete(f"/api/v1/subscribers/{person.id}",
                             headers=api_token(role)).status_code == 403
    nothing_stored_for(NEW["email"])
    db.session().expire_all()
    assert db.session().get(Subscriber, person.id) is not None
    assert count(SubscriberTag) == 0


# ---------------------------------------------------------------- adding


def test_add_pending_sends_one_confirmation_and_respects_the_throttle(
    client: FlaskClient, run_jobs: Callable[[], None], sink: Any
) -> None:
    headers = token("editor", "crm-sync")
    response = client.post("/api/v1/subscribers", json=NEW, headers=headers)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["email"] == "Ana@example.org"
    assert (body["state"], body["county"], body["timezone"]) == (
        "NY", "Kings County", "America/New_York")
    assert body["tags"] == ["donor", "volunteer"]
    assert body["attributes"] == {"cd": "NY-10"}
    assert body["subscriptions"][0]["status"] == "pending"
    assert body["confirmation_mail"] == "queued"
    [record] = body["consent_records"]
    assert (record["action"], record["actor"], record["list"]) == (
        "signup", "token:crm-sync", "newsletter")
    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "Ana@example.org"

    again = client.post("/api/v1/subscribers", json=NEW, headers=headers)
    assert again.status_code == 200
    assert again.json["confirmation_mail"] == "throttled"
    run_jobs()
    assert len(sink.messages()) == 1
    assert count(ConfirmationMail) == 1
    audit = db.session().scalars(select(AuditRecord).where(
        AuditRecord.action == "subscriber.add")).all()
    assert [a.actor for a in audit] == ["token:crm-sync", "token:crm-sync"]


def test_add_confirmed_needs_a_note_and_sends_nothing(
    client: FlaskClient, run_jobs: Callable[[], None], sink: Any
) -> None:
    headers = token("campaigner", "office")
    refused = client.post("/api/v1/subscribers", json={**NEW, "confirmed": True},
                          headers=headers)
    assert refused.status_code == 422
    assert "consent_note" in refused.json["errors"]
    nothing_stored_for(NEW["email"])

    response = client.post("/api/v1/subscribers", json={
        **NEW, "confirmed": True, "consent_note": "Signed the paper form at the rally"},
        headers=headers)
    assert response.status_code == 201
    assert response.json["subscriptions"][0]["status"] == "confirmed"
    assert response.json["confirmation_mail"] == ""
    [record] = response.json["consent_records"]
    assert (record["action"], record["actor"], record["note"]) == (
        "staff", "token:office", "Signed the paper form at the rally")
    run_jobs()
    assert sink.messages() == []


def test_a_known_address_is_merged_like_an_import_row(client: FlaskClient) -> None:
    person = subscriber("ana@example.org", first_name="Ana", attributes={"cd": "NY-12"},
                        lists={"newsletter": C})
    db.session().add(SubscriberTag(subscriber_id=person.id, tag="old"))
    db.session().commit()
    response = client.post("/api/v1/subscribers", json={
        **NEW, "first_name": "Other", "attributes": {"cd": "NY-10", "chapter": "North"},
        "tags": ["New"]}, headers=token("editor", "crm"))
    assert response.status_code == 200
    body = response.json
    assert body["id"] == person.id
    assert body["first_name"] == "Ana"  # never overwritten
    assert body["last_name"] == "Pérez"  # a blank filled
    assert body["postal_code"] == "11201-2345" and body["county"] == "Kings County"
    assert body["attributes"] == {"cd": "NY-12", "chapter": "North"}
    assert body["tags"] == ["new", "old"]  # added, none removed


@pytest.mark.parametrize("reason", [SuppressionReason.bounce, SuppressionReason.complaint,
                                    SuppressionReason.erased])
def test_suppressed_and_erased_addresses_are_refused_with_nothing_stored(
    client: FlaskClient, run_jobs: Callable[[], None], sink: Any, reason: SuppressionReason
) -> None:
    suppression(NEW["email"].lower(), reason, keep_address=reason != SuppressionReason.erased)
    for body in (NEW, {**NEW, "confirmed": True, "consent_note": "phone call"}):
        response = client.post("/api/v1/subscribers", json=body,
                               headers=token("campaigner", "crm"))
        assert response.status_code == 409, response.json
    nothing_stored_for(NEW["email"])
    assert count(ConsentRecord) == 0 and count(Subscription) == 0
    assert count(ConfirmationMail) == 0 and count(SubscriberTag) == 0
    run_jobs()
    assert sink.messages() == []


# ---------------------------------------------------------------- editing


def test_patch_merges_attributes_replaces_tags_and_moves_the_place(
    client: FlaskClient
) -> None:
    person = subscriber("bo@example.org", postal_code="11201", state="NY",
                        attributes={"cd": "NY-10", "chapter": "North"})
    db.session().add(SubscriberTag(subscriber_id=person.id, tag="old"))
    db.session().commit()
    response = client.patch(f"/api/v1/subscribers/{person.id}", json={
        "postal_code": "94110", "attributes": {"cd": None, "ward": "9"},
        "tags": ["Donor", "donor", "Phone Bank"], "locale": "es"},
        headers=token("campaigner", "crm"))
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["state"], body["county"], body["timezone"]) == (
        "CA", "San Francisco County", "America/Los_Angeles")
    assert body["attributes"] == {"chapter": "North", "ward": "9"}
    assert body["tags"] == ["donor", "phone bank"]
    assert body["locale"] == "es"
    [audit] = db.session().scalars(select(AuditRecord).where(
        AuditRecord.action == "subscriber.edit")).all()
    assert audit.actor == "token:crm"
    changes = audit.detail["changes"]
    assert changes["attributes"] == {"set": ["ward"], "removed": ["cd"]}
    assert changes["tags"] == {"added": ["donor", "phone bank"], "removed": ["old"]}
    assert changes["postal_code"] == ["11201", "94110"]
    assert "9" not in str(changes["attributes"])  # keys, not values

    unknown = client.patch(f"/api/v1/subscribers/{person.id}", json={"email": "x@y.org"},
                           headers=token("campaigner", "crm"))
    assert unknown.status_code == 422


# ---------------------------------------------------------------- erasing


def test_delete_erases_leaving_only_the_suppression_hash(
    client: FlaskClient, api_token: Headers
) -> None:
    person = subscriber("eve@example.org", first_name="Eve", attributes={"cd": "NY-10"},
                        lists={"newsletter": C},
                        consent="signup")
    db.session().add(SubscriberTag(subscriber_id=person.id, tag="donor"))
    db.session().commit()
    sid = person.id
    response = client.delete(f"/api/v1/subscribers/{sid}", headers=token("admin", "dpo"))
    assert response.status_code == 204 and response.data == b""
    session = db.session()
    session.expire_all()
    assert count(Subscriber) == 0 and count(Subscription) == 0
    assert count(ConsentRecord) == 0 and count(SubscriberTag) == 0
    [row] = session.scalars(select(Suppression)).all()
    assert (row.email, row.reason, row.email_hash) == (
        "", SuppressionReason.erased, email_hash("eve@example.org"))
    [audit] = session.scalars(select(AuditRecord).where(
        AuditRecord.action == "subscriber.erase")).all()
    assert audit.actor == "token:dpo" and "eve" not in str(audit.detail).lower()
    assert client.get(f"/api/v1/subscribers/{sid}", headers=api_token("viewer")
                      ).status_code == 404
    assert client.delete(f"/api/v1/subscribers/{sid}", headers=api_token("admin")
                         ).status_code == 404
    # …and the address cannot be added back by staff.
    assert client.post("/api/v1/subscribers", json={**NEW, "email": "eve@example.org"},
                       headers=api_token("admin")).status_code == 409


# ---------------------------------------------------------------- hostile values


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"attributes": {"cd": "NY\u202e10"}}, "attributes.cd"),
    ({"attributes": {"cd": "a\nb"}}, "attributes.cd"),
    ({"attributes": {"cd": "x" * 1001}}, "attributes.cd"),
    ({"attributes": {"cd": 5}}, "attributes.cd"),
    ({"attributes": {"cd": {"nested": ["deep"]}}}, "attributes.cd"),
    ({"attributes": {"cd": ["NY-10"]}}, "attributes.cd"),
    ({"attributes": {"bad\x00key": "1"}}, "attributes"),
    ({"attributes": {"": "1"}}, "attributes"),
    ({"attributes": {"k" * 101: "1"}}, "attributes"),
    ({"attributes": {f"k{i}": "v" for i in range(51)}}, "attributes"),
    ({"tags": ["ok", "a,b"]}, "tags.1"),
    ({"tags": ["a;b"]}, "tags.0"),
    ({"tags": ["   "]}, "tags.0"),
    ({"tags": ["t" * 65]}, "tags.0"),
    ({"tags": ["\u2066x"]}, "tags.0"),
    ({"tags": ["x\x07"]}, "tags.0"),
    ({"tags": [7]}, "tags.0"),
    ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
    ({"first_name": "Ana\r\nBcc: x@evil.org"}, "first_name"),
    ({"last_name": "\u202eevil"}, "last_name"),
    ({"postal_code": "1" * 11}, "postal_code"),
    ({"locale": "fr"}, "locale"),
]


@pytest.mark.parametrize(("change", "field"), HOSTILE)
def test_hostile_values_are_refused_naming_the_field(
    client: FlaskClient, change: dict[str, Any], field: str
) -> None:
    person = subscriber("bo@example.org", attributes={"keep": "me"})
    headers = token("campaigner", "crm")
    added = client.post("/api/v1/subscribers", json={**NEW, **change}, headers=headers)
    assert added.status_code == 422, added.json
    assert field in added.json["errors"], added.json
    nothing_stored_for(NEW["email"])
    patched = client.patch(f"/api/v1/subscribers/{person.id}", json=change, headers=headers)
    assert patched.status_code == 422, patched.json
    assert field in patched.json["errors"], patched.json
    session = db.session()
    session.expire_all()
    again = session.get(Subscriber, person.id)
    assert again is not None
    assert (again.attributes, again.tag_rows, again.first_name) == ({"keep": "me"}, [], "")


@pytest.mark.parametrize("body", [
    {"email": "x@example.org", "lists": "newsletter"},
    {"email": ["x@example.org"], "lists": ["newsletter"]},
    {"email": "x@example.org", "lists": ["newsletter"], "attributes": ["a"]},
    {"email": "x@example.org", "lists": ["newsletter"], "tags": "a,b"},
    {"email": "x@example.org", "lists": ["newsletter"], "confirmed": "maybe"},
    {"email": "x@example.org", "lists": ["no-such-list"]},
    {"email": "x@example.org", "lists": []},
    {"email": "not an address", "lists": ["newsletter"]},
    {"email": "x@example.org", "lists": ["newsletter"], "surprise": 1},
])
def test_malformed_additions_answer_422(client: FlaskClient, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/subscribers", json=body,
                           headers=token("campaigner", "crm"))
    assert response.status_code == 422, response.json
    assert count(Subscriber) == 0


# ---------------------------------------------------------------- reading


def test_list_items_show_places_tags_and_attributes_without_n_plus_1(
    app: Flask, client: FlaskClient, api_token: Headers
) -> None:
    headers = api_token("viewer")
    for i in range(3):
        person = subscriber(f"p{i}@example.org", postal_code="60614", state="IL",
                            attributes={"cd": f"IL-{i}"})
        db.session().add_all([SubscriberTag(subscriber_id=person.id, tag=t)
                              for t in ("zeta", "alpha")])
    db.session().commit()

    def statements(n: int) -> int:
        for i in range(3, n):
            person = subscriber(f"p{i}@example.org", attributes={"cd": "x"})
            db.session().add(SubscriberTag(subscriber_id=person.id, tag="t"))
        db.session().commit()
        seen: list[str] = []
        engine = db.database().engine
        request_thread = threading.get_ident()  # the test client serves it in this thread

        def count_it(*args: Any) -> None:
            # Only the request's own statements: the embedded mode's job thread may run
            # its start-up sweeps on the same engine meanwhile.
            if threading.get_ident() == request_thread:
                seen.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count_it)
        try:
            response = client.get("/api/v1/subscribers?per_page=50", headers=headers)
        finally:
            event.remove(engine, "before_cursor_execute", count_it)
        assert response.status_code == 200
        assert len(response.json["items"]) == n
        return len([s for s in seen if "subscriber" in s.lower()])

    few = statements(3)
    many = statements(20)
    assert few == many  # the same statements for 3 people as for 20
    items = client.get("/api/v1/subscribers?per_page=50", headers=headers).json["items"]
    first = next(i for i in items if i["email"] == "p0@example.org")
    assert first["tags"] == ["alpha", "zeta"]
    assert first["attributes"] == {"cd": "IL-0"}
    assert "state" in first and "county" in first and "timezone" in first
