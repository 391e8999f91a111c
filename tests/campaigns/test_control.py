"""Faults, rejected recipients, pause/resume/cancel, mid-send unsubscribes, scheduling."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from service import db
from service.campaigns.recovery import recover
from service.models import (
    AuditRecord,
    Delivery,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from service.subscribers import Evidence
from service.subscriptions.gdpr import erase
from tests.factories import subscribers, suppression

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]


def test_sink_faults_on_a_fifth_of_requests_lose_no_one(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
) -> None:
    subscribers(40)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    sink.set_faults(0.2, ["429", "500", "503", "reset"])
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs(due_within=60)
    data = get(client, staff, cid)
    assert data["status"] == "sent", data
    assert data["counts"]["sent"] == 40
    assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: 40}


def test_one_rejected_address_does_not_fail_the_others(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(4)
    subscribers(1, prefix="broken")
    from service.models import Subscriber

    db.session().execute(update(Subscriber).where(Subscriber.email == "broken0@example.com")
                         .values(email="broken0@no-dot"))
    db.session().commit()
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "sent"
    assert (data["counts"]["sent"], data["counts"]["failed"]) == (4, 1)
    assert sorted(to(m) for m in sink.messages()) == [f"person{i}@example.com"
                                                       for i in range(4)]
    reason = db.session().scalar(select(Delivery.reason).where(Delivery.status == "failed"))
    assert reason and "valid" in reason


def test_pause_resume_and_an_unsubscribe_mid_send(
    app: Flask, client: FlaskClient, api_token: Headers, run_some: Callable[[int], None],
    run_jobs: Callable[[], None], sink,
) -> None:
    ids = subscribers(20)  # 4 batches of 5
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_some(2)  # the start job and the first batch
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=staff).status_code == 202
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=staff).status_code == 409
    run_jobs()  # the queued batch jobs find the campaign paused and do nothing
    assert get(client, staff, cid)["counts"]["sent"] == 5
    assert len(sink.messages()) == 5
    # Person 17 (third batch) unsubscribes while the campaign is paused.
    db.session().execute(update(Subscription).where(Subscription.subscriber_id == ids[17])
                         .values(status=SubscriptionStatus.unsubscribed))
    # Person 12 (third batch too) has themselves erased: the ledger keeps the row (the
    # counts stay exact) but no longer names them.
    erase(db.session(), db.session().get(Subscriber, ids[12]), Evidence(actor="subscriber"))
    # Person 19 (last batch) bounces elsewhere: their address is suppressed.
    suppression("person19@example.com", SuppressionReason.bounce, commit=False)
    db.session().commit()
    assert client.post(f"/api/v1/campaigns/{cid}/resume", headers=staff).status_code == 202
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "sent"
    assert data["counts"] == {"total": 20, "queued": 0, "sent": 17, "failed": 0, "skipped": 3}
    assert {"person17@example.com", "person12@example.com", "person19@example.com"}.isdisjoint(
        to(m) for m in sink.messages())
    assert len(sink.messages()) == 17
    skipped = db.session().execute(select(Delivery.subscriber_id, Delivery.reason)
                                   .where(Delivery.status == "skipped")).all()
    assert sorted(skipped, key=str) == sorted(
        [(None, "erased"), (ids[17], "unsubscribed"), (ids[19], "suppressed")], key=str)
    assert client.post(f"/api/v1/campaigns/{cid}/cancel", headers=staff).status_code == 409
    actions = db.session().scalars(select(AuditRecord.action).order_by(AuditRecord.id)).all()
    assert [a for a in actions if a.startswith("campaign.")][-6:] == ["campaign.schedule", "campaign.start", "campaign.frozen",
                            "campaign.pause", "campaign.resume", "campaign.finish"]


def test_a_batch_that_keeps_failing_pauses_its_campaign(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
    monkeypatch,
) -> None:
    """Every request answered 503: each attempt backs off inside the job, then releases the
    batch for later; after MAX_BATCH_ATTEMPTS claims the campaign pauses, saying why."""
    from service.campaigns import sending

    monkeypatch.setattr(sending, "IN_JOB_BACKOFF", (0.01, 0.01))  # keep the test short
    subscribers(3)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    sink.set_faults(1.0, ["503"])
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs(due_within=60)  # the releases schedule retries 5 s later: fast-forwarded
    data = get(client, staff, cid)
    assert data["status"] == "paused", data
    assert data["status_reason"].startswith("Too many errors: batch 0 failed 8 times")
    assert "503" in data["status_reason"]
    assert data["counts"] == {"total": 3, "queued": 3, "sent": 0, "failed": 0, "skipped": 0}
    assert sink.messages() == [] and sink.stats()["faults"] == 8 * 3  # 3 tries a claim
    sink.set_faults(0.0)
    assert client.post(f"/api/v1/campaigns/{cid}/resume", headers=staff).status_code == 202
    run_jobs()
    assert get(client, staff, cid)["counts"]["sent"] == 3 and len(sink.messages()) == 3


def test_cancel_stops_the_remaining_batches(
    app: Flask, client: FlaskClient, api_token: Headers, run_some: Callable[[int], None],
    run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(15)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_some(2)
    assert client.post(f"/api/v1/campaigns/{cid}/cancel", headers=staff).status_code == 202
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "cancelled"
    assert data["counts"]["sent"] == 5 and len(sink.messages()) == 5
    assert client.post(f"/api/v1/campaigns/{cid}/resume", headers=staff).status_code == 409


def test_roles_and_bad_input(app: Flask, client: FlaskClient, api_token: Headers) -> None:
    editor = api_token("editor")
    cid = create(client, editor)["id"]
    assert client.post(f"/api/v1/campaigns/{cid}/send", headers=editor).status_code == 403
    bad = client.post("/api/v1/campaigns", headers=editor, json={
        "name": "x", "kind": "poster", "subject": "{{ oops", "body": "b", "lists": ["nope"]})
    assert bad.status_code == 422
    assert "kind" in bad.get_json()["errors"]
    bad = client.post("/api/v1/campaigns", headers=editor, json={
        "name": "x", "kind": "alert", "subject": "{{ oops", "body": "b", "lists": ["nope"]})
    assert bad.status_code == 422 and "subject" in bad.get_json()["errors"]


def test_template_injection_is_inert(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(2)
    staff = api_token("campaigner")
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    refused = client.post("/api/v1/campaigns", headers=staff, json={
        "name": "x", "kind": "alert", "subject": "s", "body": escape, "lists": ["newsletter"]})
    assert refused.status_code == 422 and "unsafe" in str(refused.get_json()["errors"]["body"])
    body = "A{{ ''.__class__ }}B{{ config }}{{ request }}C{{ cycler.__init__ }}D"
    cid = create(client, staff, body=body)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    for m in sink.messages():
        assert "ABCD" in m["text"]
        assert "class" not in m["text"] and "class 'str'" not in m["html"]
        assert "SECRET" not in m["html"] and "test-secret-key-used-only-by-the-test-suite" not in m["html"]


def test_schedule_and_a_due_campaign_started_by_recovery(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(3)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    when = datetime.now(UTC) + timedelta(seconds=2)
    answer = client.post(f"/api/v1/campaigns/{cid}/send", headers=staff,
                         json={"send_at": when.isoformat()})
    assert answer.status_code == 202 and answer.get_json()["status"] == "scheduled"
    run_jobs() if app.extensions["queue"].local is None else None
    assert get(client, staff, cid)["status"] == "scheduled" and not sink.messages()
    time.sleep(2.2)
    # The worker "was down" at send_at (no scheduler ran): the recovery pass starts it.
    recover()
    run_jobs()
    deadline = time.monotonic() + 10
    while get(client, staff, cid)["status"] != "sent" and time.monotonic() < deadline:
        time.sleep(0.1)
        run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    assert Counter(to(m) for m in sink.messages()) == {f"person{i}@example.com": 1
                                                         for i in range(3)}


def test_an_alert_goes_before_the_rest_of_a_newsletter(
    app: Flask, client: FlaskClient, api_token: Headers, run_some: Callable[[int], None],
    run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(30)
    subscribers(3, list_slug="action-alerts", prefix="activist")
    staff = api_token("campaigner")
    newsletter = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{newsletter}/send", headers=staff)
    run_some(2)  # newsletter started, first of 6 batches sent
    alert = create(client, staff, kind="alert", lists=["action-alerts"], subject="Act now")["id"]
    client.post(f"/api/v1/campaigns/{alert}/send", headers=staff)
    run_jobs()
    order = [to(m) for m in sink.messages()]
    first_alert = min(i for i, to in enumerate(order) if to.startswith("activist"))
    assert first_alert == 5  # right after the newsletter batch that was running
    assert get(client, staff, newsletter)["status"] == "sent"
    assert get(client, staff, alert)["status"] == "sent"


def test_the_frozen_audience_size_is_recorded_and_an_empty_one_finishes_at_once(
    client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None], sink,
) -> None:
    subscribers(7)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    frozen = db.session().scalars(select(AuditRecord.detail).where(
        AuditRecord.action == "campaign.frozen", AuditRecord.object_id == str(cid))).one()
    assert frozen == {"total": 7}
    # Nobody is confirmed on action-alerts: the campaign is sent the moment it starts.
    empty = create(client, staff, lists=["action-alerts"])["id"]
    client.post(f"/api/v1/campaigns/{empty}/send", headers=staff)
    run_jobs()
    assert get(client, staff, empty)["status"] == "sent"
    assert get(client, staff, empty)["counts"]["total"] == 0
