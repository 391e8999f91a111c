"""Ids typed into URLs and forms: anything that is not a plain number every id column can
hold (2**31 and more, since the narrowest are INTEGER; `²`; other scripts' digits) is a
404 or a 422, never a 500.

The route test walks `app.url_map`, so a new `<int:…>` route is covered without a change.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter

from service import db
from service.db import MAX_ID, parse_id
from service.models import Role, SubscriptionStatus
from tests import factories
from tests.admin.signin import log_in

HOSTILE_IDS = [str(2**31), "9" * 10, str(2**63), str(2**64), "9" * 40, "٣", "１", "²"]
HOSTILE_BEFORE = [*HOSTILE_IDS, "-1", "+1", " 1", "1e3", "0x10", "1_000", "1.0", "\x00"]


def test_parse_id():
    assert parse_id("1") == 1 and parse_id(str(MAX_ID)) == MAX_ID == 2**31 - 1
    for text in [*HOSTILE_BEFORE, "", "0", None, 5, "١٢"]:
        assert parse_id(text) is None, text


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    """A client signed in to the admin as an admin, also carrying an admin API token."""
    factories.user("root@example.org", Role.admin)
    client = app.test_client()
    client.csrf = log_in(client, "root@example.org")  # type: ignore[attr-defined]
    client.environ_base["HTTP_AUTHORIZATION"] = factories.bearer(
        factories.api_token("admin"))["Authorization"]
    return client


def int_routes(app: Flask) -> Iterator[tuple[str, str]]:
    """(method, rule) of every route with an integer part."""
    for rule in app.url_map.iter_rules():
        if any(isinstance(c, IntegerConverter) for c in rule._converters.values()):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield method, rule.rule


def test_every_integer_route(app, admin):
    routes = list(int_routes(app))
    assert len(routes) > 30 and any(r.startswith("/api/") for _, r in routes)
    for method, rule in routes:
        for value in ["9" * 9, str(2**31 - 1), *HOSTILE_IDS]:
            url = re.sub(r"<int:[a-z_]+>", value, rule).replace("<lang>", "en")
            url = url.replace("<name>", "x.eml")
            answer = admin.open(url, method=method, data={"csrf_token": admin.csrf})
            # The largest id a URL holds is an id (no such row, or a body refused first);
            # past it, the route does not match at all.
            expected = (404, 422) if value == "9" * 9 else (404,)
            assert answer.status_code in expected, (method, url, answer.status_code)


@pytest.mark.parametrize("page", ["/admin/campaigns", "/admin/subscribers",
                                  "/admin/suppressions", "/admin/audit"])
def test_before(admin, page):
    assert admin.get(page).status_code == 200
    assert admin.get(f"{page}?before=").status_code == 200
    assert admin.get(f"{page}?before={2**31 - 1}").status_code == 200
    for value in HOSTILE_BEFORE:
        answer = admin.get(page, query_string={"before": value})
        assert answer.status_code == 422, (page, value, answer.status_code)
        assert "before" in answer.text


def test_list_ids_in_admin_forms(admin):
    person = factories.subscriber("p@example.org", lists={"newsletter": SubscriptionStatus.confirmed})
    for value in HOSTILE_IDS:
        answer = admin.post(f"/admin/subscribers/{person.id}/unsubscribe",
                            data={"csrf_token": admin.csrf, "list_id": value})
        assert answer.status_code == 400, (value, answer.status_code)
        answer = admin.post("/admin/subscribers/new", data={
            "csrf_token": admin.csrf, "email": "n@example.org", "lists": value,
            "consent_note": "Signed the paper form at the rally."})
        assert answer.status_code == 422, (value, answer.status_code)
        assert "lists" in answer.text
    db.session().expire_all()
    assert factories.mailing_list("newsletter").id in {
        s.list_id for s in person.subscriptions if s.status == SubscriptionStatus.confirmed}


def test_column_count_of_an_import(admin):
    for value in [*HOSTILE_IDS, "x", str(10**9)]:
        answer = admin.post("/admin/imports", data={
            "csrf_token": admin.csrf, "list": "newsletter", "columns": value, "column_0": "email",
            "file": (io.BytesIO(b"email\r\na@example.org\r\n"), "a.csv")},
            content_type="multipart/form-data")
        assert answer.status_code == 422, (value, answer.status_code)
