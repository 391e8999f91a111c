"""The double opt-in path end to end: signup → worker → SendGrid sink → confirm."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from service import db
from service.models import ConsentRecord, Subscriber, Subscription, SubscriptionStatus

FORM = {"email": "Ana.Perez@Example.ORG", "lists": "action-alerts", "first_name": "Ana",
        "postal_code": "94110", "lang": "es"}


def confirm_link(message: dict) -> str:
    match = re.search(r"http://localhost(/confirm/[A-Za-z0-9_.\-]+)", message["text"])
    assert match, message["text"]
    return match.group(1)


def subscriptions_of(email_key: str) -> dict[str, str]:
    subscriber = db.session().scalars(
        select(Subscriber).where(Subscriber.email_key == email_key)
    ).one()
    return {s.mailing_list.slug: s.status.value for s in subscriber.subscriptions}


def test_form_signup_confirm_end_to_end(app, client, run_jobs, sink, api_token):
    response = client.post("/subscribe", data=FORM)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/subscribe/thanks")
    assert "Set-Cookie" not in response.headers

    subscriber = db.session().scalars(select(Subscriber)).one()
    assert subscriber.email == "Ana.Perez@example.org"  # domain lower-cased, local part kept
    assert subscriber.state == "CA" and subscriber.locale == "es"
    assert subscriptions_of("ana.perez@example.org") == {"action-alerts": "pending"}
    if app.extensions["queue"].local is None:
        # Nothing is sent inside the request: the mail waits in Redis for a worker. (The
        # embedded mode's job thread may already have sent it by now, so not checked.)
        assert sink.messages() == []

    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "Ana.Perez@example.org"
    assert mail["subject"] == "Confirma tu suscripción, por favor"
    assert "Alertas de acción" in mail["html"] and "Hola:" in mail["text"]
    link = confirm_link(mail)

    page = client.get(link)
    assert page.status_code == 200 and "Confirmar" in page.get_data(as_text=True)
    db.session().expire_all()
    assert subscriptions_of("ana.perez@example.org") == {"action-alerts": "pending"}

    done = client.post(link)
    assert done.status_code == 200
    assert "Suscripción confirmada" in done.get_data(as_text=True)
    assert client.post(link).status_code == 200  # idempotent

    headers = api_token("viewer")
    found = client.get("/api/v1/subscribers?email=ana.perez@example.org", headers=headers).json
    [item] = found["items"]
    assert item["subscriptions"] == [
        {"list": "action-alerts", "status": "confirmed", "confirmed_at": item["subscriptions"][0]["confirmed_at"], "unsubscribed_at": None}
    ]
    detail = client.get(f"/api/v1/subscribers/{item['id']}", headers=headers).json
    assert [c["action"] for c in detail["consent_records"]] == ["signup", "confirm"]
    assert detail["consent_records"][0]["endpoint"] == "form"
    assert detail["consent_records"][0]["consent_text_version"]


def test_json_signup_and_identical_answers(client, run_jobs, sink):
    body = {"email": "bo@example.org", "lists": ["newsletter"]}
    first = client.post("/api/v1/subscriptions", json=body)
    assert first.status_code == 202 and first.json == {"status": "pending"}
    run_jobs()
    link = confirm_link(sink.messages()[0])
    client.post(link)
    sink.clear()

    answers = [client.post("/api/v1/subscriptions", json=body) for _ in range(2)]
    answers.append(client.post("/api/v1/subscriptions", json={**body, "email": "new@example.org"}))
    answers.append(client.post("/api/v1/subscriptions", json={**body, "email": "BO@EXAMPLE.ORG"}))
    assert {(a.status_code, a.get_data()) for a in answers} == {(first.status_code, first.get_data())}
    run_jobs()
    # confirmed address signing up again: nothing mailed; the new one gets its mail
    assert [m["to"][0]["email"] for m in sink.messages()] == ["new@example.org"]
    assert db.session().scalar(select(func.count()).select_from(Subscriber)) == 2


def test_confirmed_subscriber_joining_another_list_confirms_only_the_new_one(client, run_jobs, sink):
    client.post("/api/v1/subscriptions", json={"email": "c@example.org", "lists": ["newsletter"]})
    run_jobs()
    client.post(confirm_link(sink.messages()[0]))
    sink.clear()
    client.post("/api/v1/subscriptions",
                json={"email": "c@example.org", "lists": ["newsletter", "action-alerts"]})
    run_jobs()
    [mail] = sink.messages()
    assert "Action alerts" in mail["text"] and "Monthly newsletter" not in mail["text"]


def test_unsubscribed_becomes_pending_again(app, client, run_jobs, sink):
    client.post("/api/v1/subscriptions", json={"email": "u@example.org", "lists": ["newsletter"]})
    run_jobs()
    client.post(confirm_link(sink.messages()[0]))
    session = db.session()
    sub = session.scalars(select(Subscription)).one()
    sub.status = SubscriptionStatus.unsubscribed
    session.commit()
    sink.clear()
    app.extensions["settings"].__dict__  # settings are frozen; throttle allows 1 per 10 min
    client.post("/api/v1/subscriptions", json={"email": "u@example.org", "lists": ["newsletter"]})
    session.expire_all()
    assert session.scalars(select(Subscription)).one().status == SubscriptionStatus.pending


def test_confirmation_throttle_per_address(client, run_jobs, sink):
    for _ in range(5):
        assert client.post("/api/v1/subscriptions",
                           json={"email": "t@example.org", "lists": ["newsletter"]}).status_code == 202
    run_jobs()
    assert len(sink.messages()) == 1
    # each attempt is still in the consent ledger
    assert db.session().scalar(select(func.count()).select_from(ConsentRecord)) == 5


def test_honeypot_stores_nothing_but_looks_like_success(client, run_jobs, sink):
    normal = client.post("/subscribe", data={**FORM, "email": "x@example.org"})
    trapped = client.post("/subscribe", data={**FORM, "email": "bot@example.org", "website": "http://spam"})
    assert trapped.status_code == normal.status_code == 303
    assert trapped.headers["Location"] == normal.headers["Location"]
    api = client.post("/api/v1/subscriptions", json={"email": "bot2@example.org", "lists": ["newsletter"], "website": "x"})
    assert api.status_code == 202 and api.json == {"status": "pending"}
    run_jobs()
    emails = {s.email for s in db.session().scalars(select(Subscriber))}
    assert emails == {"x@example.org"}


def test_bad_and_expired_tokens_change_nothing(client, run_jobs, sink, app):
    client.post("/api/v1/subscriptions", json={"email": "e@example.org", "lists": ["newsletter"]})
    run_jobs()
    link = confirm_link(sink.messages()[0])
    tampered = link[:-6] + ("A" if link[-6] != "A" else "B") + link[-5:]
    response = client.post(tampered)
    assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    assert "/subscribe" in response.get_data(as_text=True)
    from service.tokens import Purpose, make_token
    old = make_token(Purpose.confirm, {"s": 1, "l": [1]})
    # a token for another purpose is refused
    unsub = make_token(Purpose.unsubscribe, {"s": 1, "l": [1]})
    assert client.post(f"/confirm/{unsub}").status_code == 400
    db.session().expire_all()
    assert subscriptions_of("e@example.org") == {"newsletter": "pending"}
    assert old  # a well-formed token still confirms
    # expired: max age is 7 days
    import time
    real = time.time
    try:
        time.time = lambda: real() + 8 * 24 * 3600
        expired = client.post(link)
    finally:
        time.time = real
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)
    db.session().expire_all()
    assert subscriptions_of("e@example.org") == {"newsletter": "pending"}


def test_redirect_only_to_allowed_origins(client):
    ok = client.post("/subscribe", data={**FORM, "redirect": "http://partner.example/thanks"})
    assert ok.headers["Location"] == "http://partner.example/thanks"
    evil = client.post("/subscribe", data={**FORM, "email": "z@example.org", "redirect": "http://evil.example/"})
    assert evil.headers["Location"].startswith("/subscribe/thanks")


@pytest.mark.parametrize("target", [
    "http://partner.example/thanks\r\nSet-Cookie: stolen=1",
    "http://partner.example/\nthanks",
    "http://partner.\rexample/",
    "http://partner.example/\x00",
    "http://partner.example/\x7f",
    "http://partner.example/\u2028",
    "http://partner.example/\u202egro.live",
    "\thttp://partner.example/",
    "http://partner.example\\@evil.example/",
    "http://user@partner.example@evil.example/",
    "http://partner.example:99999/",
])
def test_a_hostile_redirect_is_refused_and_the_signup_still_counts(client, target):
    answer = client.post("/subscribe", data={**FORM, "redirect": target})
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/subscribe/thanks")
    assert "stolen" not in answer.headers.get("Set-Cookie", "")
    assert subscriptions_of("ana.perez@example.org") == {"action-alerts": "pending"}


@pytest.mark.parametrize("origin, allowed", [("http://partner.example", True), ("http://evil.example", False)])
def test_cors(client, origin, allowed):
    pre = client.options("/api/v1/subscriptions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    got = pre.headers.get("Access-Control-Allow-Origin")
    assert (got == origin) if allowed else (got is None)
    post = client.post("/api/v1/subscriptions", json={"email": "o@example.org", "lists": ["newsletter"]},
                       headers={"Origin": origin})
    assert (post.headers.get("Access-Control-Allow-Origin") == origin) == allowed


def test_hosted_form_in_both_languages(client):
    en = client.get("/subscribe?lists=action-alerts").get_data(as_text=True)
    es = client.get("/subscribe?lists=action-alerts,newsletter&lang=es").get_data(as_text=True)
    assert "Sign up" in en and "Action alerts" in en and "Monthly newsletter" not in en
    assert "Suscríbete" in es and "Boletín mensual" in es and 'name="website"' in es


def test_a_new_address_stores_the_same_rows_on_every_backend(client, run_jobs, sink):
    """PostgreSQL writes a new address in one statement, SQLite through the ORM: same rows."""
    from service.models import ConfirmationMail, MailingList

    response = client.post(
        "/api/v1/subscriptions",
        json={"email": "Lu@Example.org", "lists": ["newsletter", "action-alerts"],
              "first_name": "Lu", "last_name": "Ng", "postal_code": "10001", "lang": "es",
              "source": "https://org.example/petition"},
        headers={"User-Agent": "UA/1.0"}, environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.status_code == 202
    session = db.session()
    lists = {ml.id: ml.slug for ml in session.scalars(select(MailingList))}
    sub = session.scalars(select(Subscriber)).one()
    assert (sub.email, sub.email_key, sub.first_name, sub.last_name, sub.postal_code,
            sub.state, sub.locale, sub.status.value, sub.attributes) == (
        "Lu@example.org", "lu@example.org", "Lu", "Ng", "10001", "NY", "es", "active", {})
    assert sub.created_at is not None and sub.updated_at is not None
    rows = session.scalars(select(Subscription).order_by(Subscription.list_id)).all()
    assert sorted((lists[r.list_id], r.status.value, r.confirmed_at, r.unsubscribed_at)
                  for r in rows) == [("action-alerts", "pending", None, None),
                                     ("newsletter", "pending", None, None)]
    assert all(r.subscriber_id == sub.id and r.created_at is not None for r in rows)
    records = session.scalars(select(ConsentRecord).order_by(ConsentRecord.id)).all()
    assert [(lists[c.list_id or 0], c.action, c.ip, c.user_agent, c.source, c.endpoint,
             c.actor, c.note) for c in records] == [
        (slug, "signup", "192.0.2.7", "UA/1.0", "https://org.example/petition", "api",
         "subscriber", "") for slug in ("newsletter", "action-alerts")]
    assert all(c.consent_text_version and c.subscriber_id == sub.id for c in records)
    [mail] = session.scalars(select(ConfirmationMail)).all()
    assert mail.subscriber_id == sub.id and mail.result == "queued"
    assert mail.list_ids == ",".join(str(i) for i in sorted(r.list_id for r in rows))
    run_jobs()
    [message] = sink.messages()
    assert message["to"][0]["email"] == "Lu@example.org"
    db.session().expire_all()
    assert db.session().get(ConfirmationMail, mail.id).result != "queued"


@pytest.mark.parametrize("status", [SubscriptionStatus.confirmed, SubscriptionStatus.pending,
                                    SubscriptionStatus.unsubscribed])
@pytest.mark.parametrize("route", ["form", "json"])
def test_a_public_signup_never_changes_an_existing_profile(client, status, route):
    """A stranger who knows an address must not write into its blank fields (the names
    appear in campaign mails, the postal code decides state targeting)."""
    from tests.factories import subscriber

    person = subscriber("quiet@example.org", lists={"newsletter": status})
    fields = {"first_name": "Mallory", "last_name": "Spoof", "postal_code": "10001",
              "lang": "es"}
    if route == "form":
        answer = client.post("/subscribe", data={"email": "quiet@example.org",
                                                 "lists": "action-alerts", **fields})
        assert answer.status_code == 303
    else:
        answer = client.post("/api/v1/subscriptions", json={
            "email": "quiet@example.org", "lists": ["action-alerts"], **fields})
        assert answer.status_code == 202
    session = db.session()
    session.expire_all()
    stored = session.get(Subscriber, person.id)
    assert (stored.first_name, stored.last_name, stored.postal_code, stored.state,
            stored.locale) == ("", "", "", "", "en")
    # The signup itself still counts: the new list waits for the person's confirmation.
    assert subscriptions_of("quiet@example.org")["action-alerts"] == "pending"


PHISH = "Your account is locked, call +1 555 0100 now"


@pytest.mark.parametrize("route", ["form", "json"])
def test_mails_a_stranger_can_trigger_carry_no_typed_name(client, run_jobs, sink, route):
    """Anyone can have a confirmation mail sent to any address (and then a preferences
    link): the name they typed must not ride along, in the greeting or in `To:`."""
    body = {"email": "target@example.org", "first_name": PHISH, "last_name": PHISH}
    if route == "form":
        assert client.post("/subscribe", data={**body, "lists": "newsletter"}).status_code == 303
    else:
        answer = client.post("/api/v1/subscriptions", json={**body, "lists": ["newsletter"]})
        assert answer.status_code == 202
    assert client.post("/preferences", data={"email": "target@example.org"}).status_code == 200
    run_jobs()
    mails = sink.messages()
    assert len(mails) == 2
    for mail in mails:
        assert [(to["email"], to.get("name")) for to in mail["to"]] == [
            ("target@example.org", None)], mail["to"]
        for part in (mail["subject"], mail["text"], mail["html"]):
            assert "555" not in part and "locked" not in part
        assert "Hello," in mail["text"]
