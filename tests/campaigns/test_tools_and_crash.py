"""Test send, audience count, CLI, a refused API key, and a worker killed with SIGKILL."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from sendgrid_sink import SinkServer
from service import db
from service.campaigns.recovery import recover
from service.models import Subscriber, Subscription, SubscriptionStatus
from tests.factories import subscribers
from tests.support import kill_worker, start_worker, stop_worker, worker_env

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]


def test_test_send_uses_the_real_renderer_and_leaves_counts_alone(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    subscribers(3, locale_es_every=1)  # person0..2, all Spanish
    staff = api_token("campaigner")
    cid = create(client, staff, variants={"es": {"subject": "Hola {{ first_name }}",
                                                 "body": "Hola {{ first_name }}"}})["id"]
    response = client.post(f"/api/v1/campaigns/{cid}/test", headers=staff,
                           json={"emails": ["staff@example.org", "person1@example.com"]})
    assert response.status_code == 202
    run_jobs()
    by_address = {to(m): m for m in sink.messages()}
    assert set(by_address) == {"staff@example.org", "person1@example.com"}
    assert by_address["staff@example.org"]["subject"] == "[TEST] Hello Test"
    assert by_address["person1@example.com"]["subject"] == "[TEST] Hola First1"
    for message in by_address.values():
        assert "List-Unsubscribe" in message["headers"]
        assert "Drug Policy Action" in message["html"]
    data = get(client, staff, cid)
    assert data["status"] == "draft"
    assert data["counts"] == {"total": 0, "queued": 0, "sent": 0, "failed": 0, "skipped": 0}
    bad = client.post(f"/api/v1/campaigns/{cid}/test", headers=staff,
                      json={"emails": ["not-an-address"]})
    assert bad.status_code == 422


def test_audience_count_follows_lists_segment_and_suppression(
    app: Flask, client: FlaskClient, api_token: Headers,
) -> None:
    subscribers(6, state="CA")
    subscribers(4, prefix="ny", state="NY")
    subscribers(2, prefix="pending", status=SubscriptionStatus.pending)
    subscribers(3, list_slug="action-alerts")  # person0..2 on both lists: counted once
    staff = api_token("viewer")
    editor = api_token("editor")
    both = create(client, editor, lists=["newsletter", "action-alerts"])["id"]
    ny = create(client, editor, segment={"states": ["NY"]})["id"]
    assert client.get(f"/api/v1/campaigns/{both}/audience", headers=staff).get_json() == {
        "count": 10}
    assert client.get(f"/api/v1/campaigns/{ny}/audience", headers=staff).get_json() == {
        "count": 4}
    db.session().execute(update(Subscription)
                         .where(Subscription.subscriber_id == Subscriber.id,
                                Subscriber.email == "ny0@example.com")
                         .values(status=SubscriptionStatus.unsubscribed))
    db.session().commit()
    assert client.get(f"/api/v1/campaigns/{ny}/audience", headers=staff).get_json() == {
        "count": 3}


def test_cli_send_and_illegal_transition(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    subscribers(7)
    cid = create(client, api_token("campaigner"))["id"]
    runner = app.test_cli_runner()
    result = runner.invoke(args=["campaigns", "send", str(cid)])
    assert result.exit_code == 0, result.output
    run_jobs()
    assert get(client, api_token("viewer"), cid)["status"] == "sent"
    assert len(sink.messages()) == 7
    result = runner.invoke(args=["campaigns", "pause", str(cid)])
    assert result.exit_code != 0 and "sent" in result.output
    result = runner.invoke(args=["campaigns", "send", "999"])
    assert result.exit_code != 0 and "No campaign 999" in result.output


@pytest.fixture
def strict_sink() -> Iterator[SinkServer]:
    server = SinkServer(api_key="SG.the-right-key")
    server.start()
    yield server
    server.stop()


def test_a_refused_api_key_pauses_the_campaign_with_the_reason(
    make_app: Callable[..., Flask], strict_sink: SinkServer, api_token: Headers,
) -> None:
    app = make_app(campaign_batch_size=5, sendgrid_api_host=strict_sink.url,
                   sendgrid_api_key="SG.wrong")
    with app.app_context():
        subscribers(10)
        client = app.test_client()
        staff = api_token("campaigner")
        cid = create(client, staff)["id"]
        client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
        queue = app.extensions["queue"]
        if queue.local is not None:
            queue.local.drain()
        else:
            queue.make_worker().work(burst=True)
        data = get(client, staff, cid)
        assert data["status"] == "paused"
        assert "401" in data["status_reason"] or "refused" in data["status_reason"]
        assert data["counts"]["queued"] == 10 and strict_sink.messages() == []


def test_a_worker_killed_mid_send_loses_no_one(
    app: Flask, client: FlaskClient, api_token: Headers, backend: str, sink: SinkServer,
    tmp_path: Path,
) -> None:
    if backend != "postgres":
        pytest.skip("needs real worker processes on Redis")
    env = worker_env(app, sink.url, CAMPAIGN_BATCH_SIZE="5", CAMPAIGN_LEASE_SECONDS="2")
    subscribers(80)  # 16 batches of 5
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    sink.set_faults(1.0, ["slow"], slow_seconds=0.1)  # every request takes 0.1 s
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    deadline = time.monotonic() + 30
    while sink.stats()["personalizations"] < 4 * 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_worker(worker)
    assert get(client, staff, cid)["status"] == "sending", log.read_text()
    sink.set_faults(0.0, [])
    time.sleep(2.1)  # the lease of the batch in flight runs out
    recover()
    survivor = start_worker({**env}, log)
    try:
        deadline = time.monotonic() + 30
        while get(client, staff, cid)["status"] != "sent" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_worker(survivor)
    data = get(client, staff, cid)
    assert data["status"] == "sent", log.read_text()
    assert data["counts"] == {"total": 80, "queued": 0, "sent": 80, "failed": 0, "skipped": 0}
    received = Counter(to(m) for m in sink.messages())
    assert set(received) == {f"person{i}@example.com" for i in range(80)}
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= 5, received  # at most the one batch in flight at the kill


def test_embedded_mode_finishes_a_batch_a_restart_interrupted(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[[], None],
    make_app: Callable[..., Flask], sink: SinkServer,
) -> None:
    """No Redis, so no worker.py runs the watchdog: the restarted app's first request
    does, and it keeps running every lease while a campaign sends. A batch the restart
    interrupted a moment ago is not stale at that first pass; a lease later it is."""
    from service.db import utcnow
    from service.models import Batch, Campaign, Delivery

    if app.extensions["queue"].local is None:
        pytest.skip("the embedded mode (in-process jobs)")
    subscribers(10)  # two batches of 5
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    # Rewind to "the process died while sending the second batch": the batch was claimed
    # a moment ago, its recipients are still queued, and its job died with the process.
    session = db.session()
    last = session.scalars(select(Batch).where(Batch.campaign_id == cid)
                           .order_by(Batch.seq.desc())).first()
    assert last is not None
    session.execute(update(Delivery).where(Delivery.batch_id == last.id)
                    .values(status="queued", sent_at=None))
    session.execute(update(Batch).where(Batch.id == last.id).values(
        status="sending", claimed_at=utcnow(), finished_at=None, sent=0))
    session.execute(update(Campaign).where(Campaign.id == cid)
                    .values(status="sending", finished_at=None))
    session.commit()
    rewound = {to(m) for m in sink.messages()[-5:]}
    sink.clear()

    restarted = make_app(campaign_batch_size=5, campaign_lease_seconds=2)
    with restarted.app_context():
        restarted_client = restarted.test_client()
        assert restarted_client.get("/healthz").status_code == 200  # its first request
        deadline = time.monotonic() + 15
        while get(restarted_client, staff, cid)["status"] != "sent":
            assert time.monotonic() < deadline, get(restarted_client, staff, cid)
            time.sleep(0.2)
        data = get(restarted_client, staff, cid)
    assert data["counts"] == {"total": 10, "queued": 0, "sent": 10, "failed": 0, "skipped": 0}
    assert Counter(to(m) for m in sink.messages()) == Counter(rewound)
    assert len(rewound) == 5
