"""Staff API: the suppression list (admin only) and campaign statistics."""

from __future__ import annotations

import time

from sqlalchemy import select

from service import db
from service.models import AuditRecord, Subscriber, SubscriberStatus, Suppression
from service.subscribers import is_suppressed

from .events import event


def test_suppressions_are_admin_only(client, api_token):
    viewer = api_token("viewer")
    assert client.get("/api/v1/suppressions").status_code == 401
    assert client.get("/api/v1/suppressions", headers=viewer).status_code == 403
    assert client.post("/api/v1/suppressions", json={"email": "a@example.org"},
                       headers=api_token("campaigner")).status_code == 403


def test_add_list_and_remove_a_suppression(client, api_token, sink, run_jobs):
    admin = api_token("admin")
    added = client.post("/api/v1/suppressions",
                        json={"email": "Someone@Example.ORG", "note": "asked by phone"},
                        headers=admin)
    assert added.status_code == 201, added.json
    assert added.json["reason"] == "manual" and added.json["email"] == "Someone@example.org"
    assert is_suppressed(db.session(), "someone@example.org")
    again = client.post("/api/v1/suppressions", json={"email": "someone@example.org"},
                        headers=admin)
    assert again.status_code == 409
    bad = client.post("/api/v1/suppressions", json={"email": "nope"}, headers=admin)
    assert bad.status_code == 422 and "email" in bad.json["errors"]

    # A suppressed address signing up: same answer, no mail.
    response = client.post("/api/v1/subscriptions",
                           json={"email": "someone@example.org", "lists": ["newsletter"]})
    assert response.status_code == 202
    run_jobs()
    assert sink.messages() == []

    for n in range(3):
        client.post("/api/v1/suppressions", json={"email": f"p{n}@example.org"}, headers=admin)
    page = client.get("/api/v1/suppressions?per_page=2", headers=admin).json
    assert [i["email"] for i in page["items"]] == ["p2@example.org", "p1@example.org"]
    assert page["has_more"] is True
    page2 = client.get("/api/v1/suppressions?per_page=2&page=2", headers=admin).json
    assert len(page2["items"]) == 2 and page2["has_more"] is False

    sid = added.json["id"]
    no_reason = client.delete(f"/api/v1/suppressions/{sid}", headers=admin)
    assert no_reason.status_code == 422 and "reason" in no_reason.json["errors"]
    assert is_suppressed(db.session(), "someone@example.org")
    gone = client.delete(f"/api/v1/suppressions/{sid}", json={"reason": "confirmed by phone"},
                         headers=admin)
    assert gone.status_code == 204
    db.session().expire_all()
    assert not is_suppressed(db.session(), "someone@example.org")
    audit = db.session().scalars(
        select(AuditRecord).where(AuditRecord.action == "suppression.remove")).one()
    assert audit.detail["reason"] == "confirmed by phone" and audit.actor == "token:test-admin"
    assert audit.object_id == str(sid)
    assert client.delete(f"/api/v1/suppressions/{sid}?reason=again+please",
                         headers=admin).status_code == 404


def test_removing_a_bounce_reactivates_the_subscriber(
    client, api_token, post_events, run_jobs, sent_campaign
):
    sent = sent_campaign(1)
    post_events([event("bounce", sent)])
    run_jobs()
    suppression = db.session().scalars(select(Suppression)).one()
    response = client.delete(f"/api/v1/suppressions/{suppression.id}?reason=mailbox+fixed",
                             headers=api_token("admin"))
    assert response.status_code == 204
    db.session().expire_all()
    assert db.session().get(Subscriber, sent.subscriber_ids[0]).status == SubscriberStatus.active


def test_campaign_stats_route(client, api_token, post_events, run_jobs, sent_campaign):
    viewer = api_token("viewer")
    assert client.get("/api/v1/campaigns/12345/stats", headers=viewer).status_code == 404
    sent = sent_campaign(3)
    hour = (int(time.time()) // 3600) * 3600
    events = [event("processed", sent, i, timestamp=hour + 1) for i in range(3)]
    events += [event("delivered", sent, i, timestamp=hour + 2) for i in range(3)]
    events += [event("open", sent, 0, timestamp=hour + 3600 + s) for s in range(3)]
    events += [event("open", sent, 1, timestamp=hour + 3600)]
    events += [event("click", sent, 0, url="https://a.example/", timestamp=hour + 3601 + s)
               for s in range(2)]
    events += [event("click", sent, 1, url="https://b.example/", timestamp=hour + 3601)]
    events += [event("unsubscribe", sent, 2, timestamp=hour + 3700)]
    post_events(events)
    run_jobs()
    assert client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats").status_code == 401
    body = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats", headers=viewer).json
    assert {k: body[k] for k in ("processed", "delivered", "opens", "unique_opens", "clicks",
                                 "unique_clicks", "bounces", "spam_reports", "unsubscribes")} == {
        "processed": 3, "delivered": 3, "opens": 4, "unique_opens": 2, "clicks": 3,
        "unique_clicks": 2, "bounces": 0, "spam_reports": 0, "unsubscribes": 1,
    }
    assert [(h["delivered"], h["opens"], h["clicks"]) for h in body["hourly"]] == [
        (3, 0, 0), (0, 4, 3)]
    assert body["top_links"] == [{"url": "https://a.example/", "clicks": 2},
                                 {"url": "https://b.example/", "clicks": 1}]
    assert "/api/v1/campaigns/{campaign_id}/stats" in client.get(
        "/api/v1/openapi.json").json["paths"]
