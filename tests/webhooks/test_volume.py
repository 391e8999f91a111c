"""A SendGrid-sized batch: 10,000 events (well over 768 KB) in one signed POST."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from service import db
from service.models import Delivery, WebhookBatch, WebhookEventKey
from service.webhooks.stats import campaign_stats

from .events import event, json_body


def test_ten_thousand_events_in_one_post(client, signer, sent_campaign, run_jobs):
    sent = sent_campaign(50)
    kinds = ["processed", "delivered", "open", "click", "deferred"]
    events = [
        event(kinds[i % 5], sent, i % 50, url=f"https://x.example/{i % 7}",
              useragent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)", ip="203.0.113.9",
              category=["alert"], sg_message_id=f"m{i}.filter")
        for i in range(10_000)
    ]
    body = json_body(events)
    assert len(body) > 768 * 1024
    started = time.perf_counter()
    response = client.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    ingest_seconds = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json == {"received": 10_000, "queued": 10_000}
    started = time.perf_counter()
    run_jobs()
    process_seconds = time.perf_counter() - started
    print(f"\n10,000 events ({len(body) // 1024} KB): ingest {ingest_seconds:.2f}s "
          f"({10_000 / ingest_seconds:,.0f}/s), effects {process_seconds:.2f}s")
    assert ingest_seconds < 10  # generous: the machine is shared; the bench measures rate
    db.session().expire_all()
    assert db.session().scalar(select(func.count()).select_from(WebhookBatch)) == 0
    assert db.session().scalar(select(func.count()).select_from(WebhookEventKey)) == 10_000
    figures = campaign_stats(db.session(), sent.campaign_id)
    assert figures["processed"] == figures["delivered"] == figures["opens"] == 2000
    assert figures["unique_opens"] == 10 and figures["unique_clicks"] == 10
    assert sum(link["clicks"] for link in figures["top_links"]) == 2000
    statuses = set(db.session().scalars(select(Delivery.event_status)))
    # Subscriber k only ever gets kind k % 5 here, so each kind is some delivery's status.
    assert statuses == set(kinds)

    again = client.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    assert again.json == {"received": 10_000, "queued": 10_000}  # applied: a new batch
    run_jobs()
    db.session().expire_all()
    assert campaign_stats(db.session(), sent.campaign_id) == figures  # all duplicates
    assert db.session().scalar(select(func.count()).select_from(WebhookEventKey)) == 10_000
