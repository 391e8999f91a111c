"""A list's welcome mail: once per person and list, after the public confirmation only."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import delete, func, select

from service import db
from service.jobs import welcome as welcome_jobs
from service.models import (
    ConfirmationMail,
    MailingList,
    Role,
    Subscription,
    SubscriptionStatus,
    WelcomeMail,
)
from tests import factories
from tests.admin.signin import Staff, log_in

NOTE = "Signed the paper petition at the fair"
WELCOME = {
    "en": {"subject": "Welcome, {{ first_name }}!", "body": "Hi **{{ first_name }}**, thanks."},
    "es": {"subject": "¡Bienvenida, {{ first_name }}!", "body": "Hola **{{ first_name }}**."},
}


@pytest.fixture
def staff_admin(app) -> Staff:
    factories.user("boss@example.org", Role.admin)
    staff_client = app.test_client()
    return Staff(client=staff_client, email="boss@example.org",
                 token=log_in(staff_client, "boss@example.org"))


def set_welcome(client, api_token, slug: str, welcome: dict) -> None:
    ml = db.session().scalars(select(MailingList).where(MailingList.slug == slug)).one()
    response = client.patch(f"/api/v1/lists/{ml.id}", json={"welcome": welcome},
                            headers=api_token("admin"))
    assert response.status_code == 200, response.get_json()


def welcomes(sink) -> list[dict]:
    return [m for m in sink.messages() if "welcome" in (m.get("categories") or [])]


def welcome_rows() -> int:
    return db.session().scalar(select(func.count()).select_from(WelcomeMail)) or 0


def test_public_confirmation_sends_one_welcome_per_list_in_the_persons_language(
        app, client, run_jobs, sink, api_token):
    set_welcome(client, api_token, "action-alerts", WELCOME)
    set_welcome(client, api_token, "newsletter", {"en": WELCOME["en"]})  # no Spanish
    # (not factories.signed_up: it clears the sink after confirming)
    response = client.post("/subscribe", data={"email": "ana@example.org", "lang": "es",
                                               "lists": ["action-alerts", "newsletter"],
                                               "first_name": "Ana"})
    assert response.status_code == 303
    run_jobs()
    [confirmation] = sink.messages()
    assert welcomes(sink) == []
    link = re.search(r"http://localhost(/confirm/[A-Za-z0-9_.\-]+)", confirmation["text"])
    assert link
    sink.clear()
    assert client.post(link.group(1)).status_code == 200
    run_jobs()
    mails = welcomes(sink)
    assert len(mails) == 2, [m["subject"] for m in sink.messages()]
    by_subject = {m["subject"]: m for m in mails}
    assert set(by_subject) == {"¡Bienvenida, Ana!", "Welcome, Ana!"}  # es, then en fallback
    spanish = by_subject["¡Bienvenida, Ana!"]
    assert "Hola <strong>Ana</strong>" in spanish["html"]
    assert spanish["to"][0]["email"] == "ana@example.org"
    headers = spanish["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
    assert "/unsubscribe/" in spanish["text"] and "/preferences/" in spanish["text"]
    assert "/view/" not in spanish["html"]  # a welcome is not a campaign: no archive copy
    assert welcome_rows() == 2

    # The same link again, and the job run again: nothing more.
    sink.clear()
    assert client.post(link.group(1)).status_code == 200
    run_jobs()
    person = db.session().scalars(select(WelcomeMail)).first()
    assert person is not None
    assert welcome_jobs.send_welcome(person.subscriber_id, person.list_id) == "already welcomed"
    assert welcomes(sink) == [] and welcome_rows() == 2


def test_resubscribing_after_an_unsubscribe_does_not_welcome_again(
        app, client, run_jobs, sink, api_token):
    set_welcome(client, api_token, "action-alerts", WELCOME)
    factories.signed_up(client, run_jobs, sink, "bo@example.org", ["action-alerts"])
    run_jobs()
    assert welcome_rows() == 1
    session = db.session()
    [sub] = session.scalars(select(Subscription)).all()
    sub.status = SubscriptionStatus.unsubscribed
    session.execute(delete(ConfirmationMail))  # (past the confirmation mails' throttle)
    session.commit()
    sink.clear()
    factories.signed_up(client, run_jobs, sink, "bo@example.org", ["action-alerts"])
    run_jobs()
    assert welcomes(sink) == [] and welcome_rows() == 1


def test_the_job_twice_sends_once(app, client, run_jobs, sink, api_token):
    set_welcome(client, api_token, "action-alerts", WELCOME)
    person = factories.subscriber("cy@example.org", first_name="Cy",
                                  lists={"action-alerts": SubscriptionStatus.confirmed})
    list_id = factories.list_id("action-alerts")
    assert welcome_jobs.send_welcome(person.id, list_id).startswith("sent")
    assert welcome_jobs.send_welcome(person.id, list_id) == "already welcomed"
    assert [m["subject"] for m in welcomes(sink)] == ["Welcome, Cy!"]


def test_no_welcome_after_an_import_or_a_staff_addition(app, client, run_jobs, sink, api_token,
                                                        staff_admin):
    set_welcome(client, api_token, "action-alerts", WELCOME)
    csv = b"email,first_name\nimported@example.org,Imp\n"
    response = client.post(
        "/api/v1/imports", headers=api_token("campaigner"), content_type="multipart/form-data",
        data={"file": (io.BytesIO(csv), "people.csv"), "list": "action-alerts",
              "confirmed": "true", "consent_note": NOTE})
    assert response.status_code == 202, response.get_json()
    run_jobs()
    added = staff_admin.post("/admin/subscribers/new", {
        "email": "byhand@example.org", "lists": str(factories.list_id("action-alerts")),
        "consent_note": NOTE, "locale": "en"})
    assert added.status_code in (302, 303), added.text
    run_jobs()
    confirmed = db.session().scalar(select(func.count()).select_from(WelcomeMail))
    assert confirmed == 0 and welcomes(sink) == []


def test_a_list_without_welcome_sends_none(app, client, run_jobs, sink):
    factories.signed_up(client, run_jobs, sink, "di@example.org", ["action-alerts"])
    run_jobs()
    assert welcomes(sink) == [] and welcome_rows() == 0
