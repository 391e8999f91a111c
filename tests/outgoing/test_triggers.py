"""Every event type comes from its real trigger, through the public pages, the signed
SendGrid Event Webhook and a real send to the sink, and reaches the receiver signed."""

from __future__ import annotations

import time

from service.subscribers import email_hash
from service.tokens import preferences_url, unsubscribe_url
from tests import factories
from tests.campaigns import api_calls
from tests.factories import list_ids, signed_up
from tests.subscriptions.links import ONE_CLICK, path_of
from tests.webhooks.events import URL, event, json_body

from .conftest import wait_for


def delivered(receiver, run_jobs, n=1):
    wait_for(lambda: len(receiver.received) >= n, run_jobs)
    run_jobs(due_within=60)
    assert receiver.bad_signatures == 0
    return receiver.events()


def test_confirm_unsubscribe_and_erase(app, client, run_jobs, sink, receiver, endpoint):
    person = signed_up(client, run_jobs, sink, "Rosa@Example.org",
                       ["action-alerts", "newsletter"])
    (confirmed,) = delivered(receiver, run_jobs)
    assert confirmed["type"] == "subscriber.confirmed"
    assert confirmed["data"] == {"subscriber_id": person.id, "email": "Rosa@example.org",
                                 "lists": ["action-alerts", "newsletter"]}

    # one-click unsubscribe from the newsletter (RFC 8058), twice: one event
    url = path_of(unsubscribe_url(person.id, list_ids("newsletter"), campaign_id=3))
    for _ in range(2):
        assert app.test_client(use_cookies=False).post(
            url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
        ).status_code == 200
    events = delivered(receiver, run_jobs, 2)
    assert len(events) == 2
    assert events[1]["type"] == "subscriber.unsubscribed"
    assert events[1]["data"] == {"subscriber_id": person.id, "email": "Rosa@example.org",
                                 "lists": ["newsletter"], "channel": "one-click"}

    # the preference centre: untick the last list
    prefs = path_of(preferences_url(person.id))
    answer = client.post(prefs, data={"action": "save", "lang": "en"})
    assert answer.status_code in (200, 303), answer.get_data(as_text=True)[:500]
    events = delivered(receiver, run_jobs, 3)
    assert events[2]["type"] == "subscriber.unsubscribed"
    assert events[2]["data"]["lists"] == ["action-alerts"]
    assert events[2]["data"]["channel"] == "preferences"

    # erase: the receiver learns the id and keyed hash, never the address
    erased = client.post(prefs, data={"action": "erase", "confirm_erase": "yes"})
    assert erased.status_code == 200
    events = delivered(receiver, run_jobs, 4)
    assert events[3]["type"] == "subscriber.erased"
    assert events[3]["data"] == {"subscriber_id": person.id,
                                 "email_hash": email_hash("rosa@example.org"), "lists": []}
    assert b"Rosa@" not in receiver.received[3].body
    assert len({e["id"] for e in events}) == 4


def test_staff_unsubscribe_sends_the_event(app, client, run_jobs, sink, receiver, endpoint):
    from service import db
    from service.subscribers import Evidence
    from service.subscriptions.staff_changes import unsubscribe

    person = signed_up(client, run_jobs, sink, "kim@example.org", ["newsletter"])
    session = db.session()
    assert unsubscribe(session, session.merge(person), list_ids("newsletter")[0],
                       Evidence(actor="staff:ops@example.org", endpoint="admin"))
    session.commit()
    events = delivered(receiver, run_jobs, 2)
    assert events[1]["type"] == "subscriber.unsubscribed"
    assert events[1]["data"]["channel"] == "staff"


def test_bounce_and_complaint_from_the_signed_event_webhook(app, client, run_jobs, signer,
                                                            receiver, endpoint):
    sent = factories.sent_campaign(3)
    now = int(time.time())
    body = json_body([
        event("bounce", sent, 0, type="bounce", reason="550 no such user", timestamp=now),
        event("spamreport", sent, 1, timestamp=now),
        event("bounce", sent, 2, type="blocked", reason="soft", timestamp=now),  # no event
    ])
    assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 200
    events = delivered(receiver, run_jobs, 2)
    by_type = {e["type"]: e["data"] for e in events}
    assert set(by_type) == {"subscriber.bounced", "subscriber.complained"}
    assert by_type["subscriber.bounced"] == {
        "subscriber_id": sent.subscriber_ids[0], "email": sent.emails[0],
        "lists": ["action-alerts", "newsletter"], "campaign_id": sent.campaign_id,
        "reason": "550 no such user"}
    complained = by_type["subscriber.complained"]
    assert complained["subscriber_id"] == sent.subscriber_ids[1]
    assert complained["lists"] == ["action-alerts", "newsletter"]  # unsubscribed from all
    # the same events again (SendGrid re-sends): stored once, no second webhook event
    assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 200
    run_jobs(due_within=60)
    assert len(receiver.received) == 2


def test_campaign_sent_after_a_real_send_to_the_sink(app, client, run_jobs, sink, receiver,
                                                     endpoint, admin):
    for n in range(3):
        signed_up(client, run_jobs, sink, f"reader{n}@example.org", ["newsletter"])
    wait_for(lambda: len(receiver.received) >= 3, run_jobs)
    receiver.received.clear()
    campaign = api_calls.create(client, admin, name="December news")
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/send",
                       headers=admin).status_code == 202
    (sent,) = delivered(receiver, run_jobs)
    assert len(sink.messages()) == 3
    assert sent["type"] == "campaign.sent"
    assert sent["data"]["campaign_id"] == campaign["id"]
    assert sent["data"]["name"] == "December news"
    assert sent["data"]["lists"] == ["newsletter"]
    assert sent["data"]["counts"] == {"total": 3, "queued": 0, "sent": 3, "failed": 0,
                                      "skipped": 0}


def test_an_endpoint_gets_only_the_events_it_chose(app, client, run_jobs, sink, admin,
                                                   receiver):
    chosen = client.post("/api/v1/webhooks", headers=admin, json={
        "url": receiver.url, "events": ["subscriber.unsubscribed"]}).get_json()
    receiver.secret = chosen["secret"]
    person = signed_up(client, run_jobs, sink, "dee@example.org", ["newsletter"])
    run_jobs(due_within=60)
    assert receiver.received == []  # no confirmed event: not chosen
    url = path_of(unsubscribe_url(person.id, list_ids("newsletter")))
    app.test_client(use_cookies=False).post(
        url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded")
    assert [e["type"] for e in delivered(receiver, run_jobs)] == ["subscriber.unsubscribed"]
