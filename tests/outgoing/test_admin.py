"""The admin's Webhooks page: admins only, the secret shown once, events chosen, the log,
the test button, the disabled banner, Spanish."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from service.models import OutgoingEndpoint, Role
from tests import factories
from tests.admin.signin import SeparateUserClient, Staff, log_in

from .conftest import fresh, wait_for


@pytest.fixture
def staff(app: Flask):
    app.test_client_class = SeparateUserClient

    def make(role: str = "admin") -> Staff:
        email = f"{role}@example.org"
        factories.user(email, Role(role))
        client = app.test_client()
        return Staff(client=client, email=email, token=log_in(client, email))

    return make


def test_add_endpoint_secret_once_then_log_and_test_event(app, staff, receiver, run_jobs):
    admin = staff("admin")
    page = admin.get("/admin/webhooks")
    assert page.status_code == 200 and "No webhooks yet." in page.text
    made = admin.post("/admin/webhooks", data={
        "url": receiver.url, "events": ["subscriber.confirmed", "campaign.sent"]})
    assert made.status_code == 200
    secret = re.search(r'id="new-secret">(whsec_[^<]+)<', made.text).group(1)
    endpoint = fresh().scalars(select(OutgoingEndpoint)).one()
    assert endpoint.event_types == ["subscriber.confirmed", "campaign.sent"]
    detail = admin.get(f"/admin/webhooks/{endpoint.id}")
    assert secret not in detail.text and "No attempts yet." in detail.text
    assert secret not in admin.get("/admin/webhooks").text

    receiver.secret = secret
    tested = admin.post(f"/admin/webhooks/{endpoint.id}/test")
    assert tested.status_code == 303
    wait_for(lambda: receiver.received, run_jobs)
    assert receiver.bad_signatures == 0
    event_id = receiver.events()[0]["id"]
    log = admin.get(f"/admin/webhooks/{endpoint.id}").text
    assert event_id in log and "Test event" in log and ">200<" in log


def test_bad_url_and_no_events_are_shown_and_nothing_stored(app, staff):
    admin = staff("admin")
    answer = admin.post("/admin/webhooks", data={"url": "ftp://example.org/",
                                                 "events": ["campaign.sent"]})
    assert answer.status_code == 422 and "Only http:// and https://" in answer.text
    assert 'aria-invalid="true"' in answer.text
    answer = admin.post("/admin/webhooks", data={"url": "http://127.0.0.1:9/x"})
    assert answer.status_code == 422 and "Choose at least one event." in answer.text
    answer = admin.post("/admin/webhooks", data={"url": "http://127.0.0.1:9/\u202ex",
                                                 "events": ["campaign.sent"]})
    assert answer.status_code == 422
    assert fresh().scalars(select(OutgoingEndpoint)).all() == []


@pytest.mark.parametrize("role", ["viewer", "editor", "campaigner"])
def test_not_for_other_roles(app, staff, role, receiver):
    person = staff(role)
    assert person.get("/admin/webhooks").status_code == 403
    assert person.post("/admin/webhooks", data={"url": receiver.url,
                                                "events": ["campaign.sent"]}).status_code == 403
    assert "/admin/webhooks" not in person.get("/admin/").text
    assert fresh().scalars(select(OutgoingEndpoint)).all() == []


def test_disabled_endpoint_shows_a_banner_everywhere_and_can_be_enabled(app, staff, receiver):
    admin = staff("admin")
    admin.post("/admin/webhooks", data={"url": receiver.url, "events": ["campaign.sent"]})
    endpoint_id = fresh().scalar(select(OutgoingEndpoint.id))
    assert "outgoing webhook is disabled" not in admin.get("/admin/").text
    session = fresh()
    session.get(OutgoingEndpoint, endpoint_id).enabled = False
    session.get(OutgoingEndpoint, endpoint_id).disabled_reason = "Every delivery failed since X"
    session.commit()
    for path in ("/admin/", "/admin/subscribers", "/admin/webhooks"):
        assert "1 outgoing webhook is disabled" in admin.get(path).text, path
    detail = admin.get(f"/admin/webhooks/{endpoint_id}").text
    assert "This endpoint is disabled." in detail and "Every delivery failed since X" in detail
    saved = admin.post(f"/admin/webhooks/{endpoint_id}", data={
        "url": receiver.url, "events": ["campaign.sent"], "enabled": "on"})
    assert saved.status_code == 303
    assert fresh().get(OutgoingEndpoint, endpoint_id).enabled
    assert "outgoing webhook is disabled" not in admin.get("/admin/").text
    assert admin.post(f"/admin/webhooks/{endpoint_id}/delete").status_code == 303
    assert fresh().get(OutgoingEndpoint, endpoint_id) is None


def test_page_in_spanish(app, staff):
    admin = staff("admin")
    page = admin.get("/admin/webhooks?lang=es")
    assert '<html lang="es">' in page.text
    assert "Webhooks salientes" in page.text and "Añadir un endpoint" in page.text
