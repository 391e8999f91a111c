"""Delivery to a real receiver over HTTP: signature, retries with one stable id, the
endpoint disabled after its window of failures with nothing lost, lost jobs swept."""

from __future__ import annotations

import json
import socket
import time

from sqlalchemy import func, select, update

from service.models import AuditRecord, OutgoingAttempt, OutgoingDelivery, OutgoingEndpoint
from service.outbound import TEST_EVENT

from .conftest import FAST, fresh, wait_for


def attempts_log(client, admin, endpoint_id):
    response = client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=admin)
    assert response.status_code == 200
    return response.get_json()["items"]


def test_fails_twice_then_delivered_once_with_the_same_id(app, client, admin, receiver,
                                                          endpoint, run_jobs):
    receiver.answers = [500, 500, 200]
    answer = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=admin)
    assert answer.status_code == 202
    event_id = answer.get_json()["event_id"]
    log = wait_for(lambda: [a for a in attempts_log(client, admin, endpoint["id"]) if a["ok"]]
                   and attempts_log(client, admin, endpoint["id"]), run_jobs)
    run_jobs(due_within=3600)  # nothing more is due: one delivery, not four
    assert [r.json["id"] for r in receiver.received] == [event_id] * 3
    assert receiver.bad_signatures == 0
    body = receiver.received[0].json
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["type"] == TEST_EVENT and body["created_at"].endswith("Z")
    assert receiver.received[0].headers["Content-Type"] == "application/json"
    assert receiver.received[0].path == "/hooks?source=actionlist"
    log = attempts_log(client, admin, endpoint["id"])
    assert [(a["attempt"], a["status_code"], a["event_id"], a["type"]) for a in log] == [
        (3, 200, event_id, "test"), (2, 500, event_id, "test"), (1, 500, event_id, "test")]
    assert log[1]["error"] == "HTTP 500" and log[0]["error"] == ""
    assert all(isinstance(a["duration_ms"], int) and a["at"] for a in log)
    row = fresh().scalars(select(OutgoingDelivery)).one()
    assert (row.status, row.attempts) == ("delivered", 3)
    # the retries waited: the second came at least the base interval after the first
    first, second = sorted(a["at"] for a in log)[:2]
    assert first < second


def test_signature_is_over_the_exact_body_and_a_recent_time(app, client, admin, receiver,
                                                            endpoint, run_jobs):
    client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=admin)
    wait_for(lambda: receiver.received, run_jobs)
    got = receiver.received[0]
    header = got.headers["Actionlist-Signature"]
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(time.time() - stamp) < 60
    from .receiver import verify
    assert verify(endpoint["secret"], header, got.body)
    assert not verify(endpoint["secret"], header, got.body + b" ")
    assert not verify("whsec_other", header, got.body)
    assert json.loads(got.body)["data"]["endpoint_id"] == endpoint["id"]
    assert got.headers["Actionlist-Event-Id"] == json.loads(got.body)["id"]
    assert got.headers["User-Agent"] == "actionlist-webhooks/1"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def test_receiver_down_for_the_whole_window_disables_it_and_loses_nothing(
        app, client, admin, run_jobs):
    from service.outbound import EVENT_TYPES
    made = client.post("/api/v1/webhooks", headers=admin,
                       json={"url": closed_port_url(), "events": list(EVENT_TYPES)})
    endpoint_id = made.get_json()["id"]
    sent = [client.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=admin)
            .get_json()["event_id"] for _ in range(2)]
    started = time.monotonic()
    wait_for(lambda: not fresh().get(OutgoingEndpoint, endpoint_id).enabled, run_jobs)
    assert time.monotonic() - started >= FAST["webhooks_disable_after_seconds"] - 0.5
    session = fresh()
    endpoint = session.get(OutgoingEndpoint, endpoint_id)
    assert endpoint.disabled_at is not None
    assert "Every delivery failed since" in endpoint.disabled_reason
    audit = session.scalars(select(AuditRecord).where(
        AuditRecord.action == "webhook.disable")).one()
    assert (audit.actor, audit.object_id) == ("system", str(endpoint_id))
    # nothing lost: both events wait in the outbox, and no more attempts are made
    rows = session.scalars(select(OutgoingDelivery)).all()
    assert [(r.status, r.endpoint_id) for r in rows] == [("pending", endpoint_id)] * 2
    tried = session.scalar(select(func.count()).select_from(OutgoingAttempt))
    assert tried >= 4
    time.sleep(0.5)
    run_jobs(due_within=3600)
    assert fresh().scalar(select(func.count()).select_from(OutgoingAttempt)) == tried
    shown = client.get(f"/api/v1/webhooks/{endpoint_id}", headers=admin).get_json()
    assert shown["enabled"] is False and shown["waiting"] == 2
    assert shown["disabled_reason"].startswith("Every delivery failed since")
    # a test event to a disabled endpoint is refused, not queued
    assert client.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=admin).status_code == 409

    # the receiver comes back, staff enable the endpoint: what waited is delivered
    from . import receiver as receivers
    back = receivers.start()
    try:
        back.secret = made.get_json()["secret"]
        patched = client.patch(f"/api/v1/webhooks/{endpoint_id}", headers=admin,
                               json={"url": back.url, "enabled": True})
        assert patched.status_code == 200, patched.get_json()
        assert patched.get_json()["disabled_reason"] == ""
        wait_for(lambda: len(back.received) >= 2, run_jobs)
        assert sorted(e["id"] for e in back.events()) == sorted(sent)
        assert back.bad_signatures == 0
        wait_for(lambda: fresh().scalar(select(func.count()).select_from(OutgoingDelivery)
                                        .where(OutgoingDelivery.status == "pending")) == 0,
                 run_jobs)
    finally:
        back.server.shutdown()
        back.server.server_close()


def test_redirect_is_not_followed(app, client, admin, receiver, endpoint, run_jobs):
    receiver.answers = [302]
    receiver.extra_headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
    client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=admin)
    log = wait_for(lambda: attempts_log(client, admin, endpoint["id"]), run_jobs)
    first = log[-1]
    assert first["status_code"] == 302 and not first["ok"]
    assert "redirect not followed" in first["error"]
    assert "169.254.169.254" in first["error"]
    # the retry (no redirect this time) delivers it
    wait_for(lambda: fresh().scalar(select(OutgoingDelivery.status)) == "delivered", run_jobs)
    assert len(receiver.received) == 2


def test_events_every_endpoint_took_are_pruned_after_the_delivery_log_s_window(
        app, client, admin, receiver, endpoint, run_jobs):
    from datetime import timedelta

    import worker
    from service.db import utcnow
    from service.models import OutgoingEvent
    from service.outgoing.delivery import KEEP_DELIVERED

    down = client.post("/api/v1/webhooks", headers=admin,
                       json={"url": closed_port_url(), "events": ["subscriber.confirmed"]})
    assert down.status_code == 201
    taken = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=admin)
    waiting = client.post(f"/api/v1/webhooks/{down.get_json()['id']}/test", headers=admin)
    wait_for(lambda: receiver.received, run_jobs)
    session = fresh()
    session.execute(update(OutgoingEvent).values(
        created_at=utcnow() - KEEP_DELIVERED - timedelta(minutes=1)))
    session.commit()
    recent = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=admin)
    wait_for(lambda: len(receiver.received) == 2, run_jobs)

    worker.recovery_pass()  # a worker's periodic pass prunes

    session = fresh()
    kept = set(session.scalars(select(OutgoingEvent.public_id)))
    assert kept == {waiting.get_json()["event_id"], recent.get_json()["event_id"]}
    assert taken.get_json()["event_id"] not in kept
    # The old event's delivery and attempt went with it; the others' stayed.
    assert session.scalar(select(func.count()).select_from(OutgoingDelivery)) == 2
    assert {a.delivery_id for a in session.scalars(select(OutgoingAttempt))} <= set(
        session.scalars(select(OutgoingDelivery.id)))
    assert session.scalar(select(func.count()).select_from(OutgoingAttempt)) >= 1
