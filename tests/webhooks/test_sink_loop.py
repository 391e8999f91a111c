"""Over a real socket: a live app server, and the whole loop with the SendGrid sink
(mail → sink → signed events posted back → live app → effects job → statistics)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from service import db
from service.mail.base import OutgoingMail, Personalization
from service.models import Delivery, Subscriber, SubscriberStatus, WebhookBatch
from service.subscribers import is_suppressed
from service.webhooks.stats import campaign_stats
from tests.support import serving

LIVE_PORT = 18310


def test_live_server_takes_signed_batches(make_app, signer, sent_campaign, backend):
    """The exact bytes on the wire are what is verified (CRLF at the end included)."""
    from .events import event, json_body

    app = make_app(sendgrid_webhook_public_key=signer.public_key_b64)
    with app.app_context(), serving(app, LIVE_PORT):
        sent = sent_campaign(2)
        body = json_body([event("delivered", sent, 0), event("open", sent, 0),
                          event("delivered", sent, 1)])
        answers = []
        for payload, headers in [(body, signer.headers(body)),
                                 (body + b" ", signer.headers(body)),
                                 (body, signer.headers(body))]:
            conn = http.client.HTTPConnection("127.0.0.1", LIVE_PORT, timeout=10)
            conn.request("POST", "/webhooks/sendgrid", body=payload, headers=headers)
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())))
            conn.close()
        assert [status for status, _ in answers] == [200, 403, 200]
        assert answers[0][1] == {"received": 3, "queued": 3}
        if backend == "postgres":  # no worker yet: the same body still waits
            assert answers[2][1] == {"received": 3, "queued": 0}
        else:  # the in-process worker may have applied it already: stored again, or not
            assert answers[2][1]["received"] == 3
        run_jobs_of(app)
        db.session().rollback()
        figures = campaign_stats(db.session(), sent.campaign_id)
        assert figures["delivered"] == 2 and figures["unique_opens"] == 1


@pytest.fixture
def live_loop(make_app) -> Iterator[tuple]:
    from sendgrid_sink import SinkServer

    if not hasattr(SinkServer, "flush_events"):
        pytest.skip("this SinkServer cannot post webhook events yet")
    sink = SinkServer(port=LIVE_PORT + 1,
                      webhook_url=f"http://127.0.0.1:{LIVE_PORT}/webhooks/sendgrid",
                      event_shares={"open": 1.0, "click": 0.0, "bounce": 0.0,
                                    "spamreport": 0.0})
    sink.start()
    try:
        app = make_app(sendgrid_webhook_public_key=sink.public_key_b64,
                       sendgrid_api_host=sink.url)
        with app.app_context(), serving(app, LIVE_PORT):
            yield app, sink
    finally:
        sink.stop()


def run_jobs_of(app: Flask) -> None:
    """Like the run_jobs fixture, for the live app (its in-process worker, or RQ)."""
    queue = app.extensions["queue"]
    if queue.local is not None:
        queue.local.drain()
    else:
        queue.make_worker().work(burst=True)


def test_sink_posts_signed_events_back(live_loop, sent_campaign):
    app, sink = live_loop
    sent = sent_campaign(3)
    mail = OutgoingMail(
        subject="Act now", html="<p>Call</p>", text="Call", from_email="alerts@example.org",
        personalizations=[
            Personalization(email=email, custom_args={
                "campaign_id": str(sent.campaign_id), "subscriber_id": str(sid)})
            for email, sid in zip(sent.emails, sent.subscriber_ids, strict=True)
        ],
    )
    app.extensions["mail_transport"].send(mail)
    sink.flush_events()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and waiting("open") < 3:
        db.session().rollback()  # end the read transaction: a new snapshot next time
        time.sleep(0.1)
    run_jobs_of(app)
    db.session().rollback()
    figures = campaign_stats(db.session(), sent.campaign_id)
    assert figures["delivered"] == 3
    assert figures["opens"] >= 3 and figures["unique_opens"] == 3
    statuses = db.session().scalars(
        select(Delivery.event_status).where(Delivery.campaign_id == sent.campaign_id))
    assert set(statuses) == {"open"}


def waiting(name: str) -> int:
    """Events of that kind in the stored batches the job has not applied yet."""
    bodies = db.session().scalars(select(WebhookBatch.body))
    return sum(1 for body in bodies for e in json.loads(body) if e.get("event") == name)


def wait_for_events(name: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and waiting(name) < n:
        db.session().rollback()
        time.sleep(0.1)
    db.session().rollback()


def test_complaints_from_a_campaign_leave_the_next_audience(live_loop):
    """Campaign engine → sink → spam reports posted back → suppressed, absent from the
    next campaign's audience, and a new signup by the same address changes nothing."""
    from service.models import Role
    from tests.campaigns.api_calls import create
    from tests.factories import api_token, bearer, subscribers

    app, sink = live_loop
    sink.event_shares.update(spamreport=1.0)
    ids = subscribers(2)
    headers = bearer(api_token(Role.admin, "loop"))
    client = app.test_client()
    first = create(client, headers)
    assert client.post(f"/api/v1/campaigns/{first['id']}/send", headers=headers,
                       json={}).status_code == 202
    run_jobs_of(app)
    assert len(sink.messages()) >= 1
    sink.flush_events()
    wait_for_events("spamreport", 2)
    run_jobs_of(app)
    db.session().rollback()

    stats = client.get(f"/api/v1/campaigns/{first['id']}/stats", headers=headers).json
    assert stats["delivered"] == 2 and stats["spam_reports"] == 2
    for sid in ids:
        subscriber = db.session().get(Subscriber, sid)
        assert subscriber.status == SubscriberStatus.complained
        assert is_suppressed(db.session(), subscriber.email)

    second = create(client, headers, name="Next one")
    audience = client.get(f"/api/v1/campaigns/{second['id']}/audience", headers=headers)
    assert audience.json == {"count": 0}
    subscribers(1, prefix="newcomer")
    audience = client.get(f"/api/v1/campaigns/{second['id']}/audience", headers=headers)
    assert audience.json == {"count": 1}

    sink.clear()
    again = client.post("/api/v1/subscriptions",
                        json={"email": "person0@example.com", "lists": ["newsletter"]})
    assert again.status_code == 202 and again.json == {"status": "pending"}
    run_jobs_of(app)
    assert sink.messages() == []
    db.session().rollback()
    assert db.session().get(Subscriber, ids[0]).status == SubscriberStatus.complained
