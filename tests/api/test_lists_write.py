"""POST/PATCH /api/v1/lists: roles, the shapes, hostile values refused with nothing stored."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from service import db
from service.models import AuditRecord, MailingList

NEW = {
    "slug": "housing-2026",
    "name": {"en": "Housing", "es": "Vivienda"},
    "description": {"en": "Rent and housing news", "es": "Noticias de vivienda"},
    "public": True,
    "welcome": {"en": {"subject": "Welcome {{ first_name }}", "body": "Thanks for joining."},
                "es": {"subject": "Bienvenida", "body": "Gracias."}},
}


def lists_count() -> int:
    return db.session().scalar(select(func.count()).select_from(MailingList)) or 0


def audits(action: str) -> int:
    return db.session().scalar(select(func.count()).select_from(AuditRecord)
                               .where(AuditRecord.action == action)) or 0


def test_admin_creates_and_edits_a_list(app, client, api_token):
    admin = api_token("admin")
    created = client.post("/api/v1/lists", json=NEW, headers=admin)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["slug"] == "housing-2026" and body["name"] == "Housing"
    assert body["name_es"] == "Vivienda" and body["description"] == "Rent and housing news"
    assert body["welcome"]["es"] == {"subject": "Bienvenida", "body": "Gracias."}
    assert audits("list.create") == 1

    # GET shows the same, and a signup may name the new public list at once.
    [shown] = [x for x in client.get("/api/v1/lists", headers=api_token("viewer")).get_json()
               if x["slug"] == "housing-2026"]
    assert shown["welcome"] == body["welcome"] and shown["description_es"] == \
        "Noticias de vivienda"
    signup = {"email": "early@example.org", "lists": ["housing-2026"]}
    assert client.post("/api/v1/subscriptions", json=signup).status_code == 202

    # PATCH: description as text (English), Spanish welcome removed, made private.
    edited = client.patch(f"/api/v1/lists/{body['id']}", headers=admin, json={
        "description": "Rent news", "public": False, "welcome": {"es": None}})
    assert edited.status_code == 200, edited.get_json()
    out = edited.get_json()
    assert out["description"] == "Rent news" and out["description_es"] == "Noticias de vivienda"
    assert out["public"] is False and set(out["welcome"]) == {"en"}
    assert audits("list.edit") == 1
    # The public-list cache is dropped: the now private list is refused at once.
    refused = client.post("/api/v1/subscriptions",
                          json={"email": "late@example.org", "lists": ["housing-2026"]})
    assert refused.status_code == 422

    duplicate = client.post("/api/v1/lists", json={**NEW, "welcome": {}}, headers=admin)
    assert duplicate.status_code == 409 and "slug" in duplicate.get_json()["errors"]
    assert client.patch("/api/v1/lists/99999", json={"public": True},
                        headers=admin).status_code == 404


@pytest.mark.parametrize("role", ["viewer", "editor", "campaigner"])
def test_only_admins_write_lists(app, client, api_token, role):
    headers = api_token(role)
    assert client.post("/api/v1/lists", json=NEW, headers=headers).status_code == 403
    assert client.patch("/api/v1/lists/1", json={"public": False},
                        headers=headers).status_code == 403
    assert client.post("/api/v1/lists", json=NEW).status_code == 401
    assert lists_count() == 2


HOSTILE = [
    ({"slug": "Upper"}, "slug"),
    ({"slug": "-dash-first"}, "slug"),
    ({"slug": "a" * 65}, "slug"),
    ({"slug": "sp ace"}, "slug"),
    ({"slug": "bad\x00slug"}, "slug"),
    ({"slug": ["list"]}, "slug"),
    ({"slug": 12}, "slug"),
    ({"name": {"en": "Bell\x07"}}, "name.en"),
    ({"name": {"en": "Eve\u202egro.live"}}, "name.en"),
    ({"name": {"en": "x" * 201}}, "name.en"),
    ({"name": {"en": "lone \ud800 surrogate"}}, "name.en"),
    ({"welcome": {"es": {"subject": "a", "body": "\udfff"}}}, "welcome.es.body"),
    ({"name": {"en": {"deep": {"er": 1}}}}, "name.en"),
    ({"name": {"fr": "Logement"}}, "name"),
    ({"name": 5}, "name"),
    ({"name": {"en": ""}}, "name.en"),
    ({"description": "x" * 4001}, "description"),
    ({"description": {"es": "\u2066hidden"}}, "description.es"),
    ({"description": ["a"]}, "description"),
    ({"public": "yes"}, "public"),
    ({"public": 1}, "public"),
    ({"welcome": "hello"}, "welcome"),
    ({"welcome": {"de": {"subject": "a", "body": "b"}}}, "welcome"),
    ({"welcome": {"en": {"subject": "a"}}}, "welcome.en.body"),
    ({"welcome": {"en": {"subject": "a\nb", "body": "b"}}}, "welcome.en.subject"),
    ({"welcome": {"en": {"subject": "a", "body": "b\x1b[31m"}}}, "welcome.en.body"),
    ({"welcome": {"en": {"subject": "a", "body": "x" * 100_001}}}, "welcome.en.body"),
    ({"welcome": {"en": {"subject": "a", "body": "{{ 1/0 }}"}}}, "welcome.en.body"),
    ({"welcome": {"en": {"subject": "{% include 'x' %}", "body": "b"}}}, "welcome.en.subject"),
    ({"welcome": {"en": {"subject": "a", "body": "b", "extra": 1}}}, "welcome.en.extra"),
    ({"welcome": {"en": ["subject", "body"]}}, "welcome.en"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), HOSTILE)
def test_hostile_values_are_refused_naming_the_field_and_nothing_is_stored(
        app, client, api_token, change, field):
    admin = {**api_token("admin"), "Content-Type": "application/json"}
    # (json.dumps escapes a lone surrogate as \ud800, as a client could send it)
    created = client.post("/api/v1/lists", data=json.dumps({**NEW, **change}), headers=admin)
    assert created.status_code == 422, created.get_json()
    assert field in created.get_json()["errors"], created.get_json()
    assert lists_count() == 2 and audits("list.create") == 0
    if "slug" in change:
        return
    ml = db.session().scalars(select(MailingList).where(MailingList.slug == "newsletter")).one()
    before = (ml.name_en, ml.description_en, ml.public, dict(ml.welcome))
    edited = client.patch(f"/api/v1/lists/{ml.id}", data=json.dumps(change), headers=admin)
    assert edited.status_code == 422 and field in edited.get_json()["errors"]
    db.session().expire_all()
    assert (ml.name_en, ml.description_en, ml.public, dict(ml.welcome)) == before
    assert audits("list.edit") == 0


def test_not_an_object_and_deep_nesting_are_refused(app, client, api_token):
    admin = api_token("admin")
    for body in ("[]", '"text"', "null", "{" * 5000, "[" * 100 + "]" * 100):
        response = client.post("/api/v1/lists", data=body, headers={
            **admin, "Content-Type": "application/json"})
        assert response.status_code in (400, 422), body[:20]
    assert lists_count() == 2


def test_the_slug_cannot_change(app, client, api_token):
    ml = db.session().scalars(select(MailingList).where(MailingList.slug == "newsletter")).one()
    response = client.patch(f"/api/v1/lists/{ml.id}", json={"slug": "renamed"},
                            headers=api_token("admin"))
    assert response.status_code == 422 and "slug" in response.get_json()["errors"]
    same = client.patch(f"/api/v1/lists/{ml.id}", json={"slug": "newsletter"},
                        headers=api_token("admin"))
    assert same.status_code == 200
