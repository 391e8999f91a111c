"""What events do: deliveries, suppressions, subscriptions, consent records, statistics."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from service import db
from service.db import utcnow
from service.jobs.webhooks import process_events
from service.models import (
    ConsentRecord,
    Delivery,
    SoftBounce,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    WebhookBatch,
    WebhookEventKey,
)
from service.subscribers import is_suppressed
from service.webhooks.stats import campaign_stats

from .events import event, json_body


def fresh(model, ident):
    db.session().expire_all()
    return db.session().get(model, ident)


def delivery(sent, index=0) -> Delivery:
    db.session().expire_all()
    return db.session().scalars(
        select(Delivery).where(Delivery.campaign_id == sent.campaign_id,
                               Delivery.subscriber_id == sent.subscriber_ids[index])
    ).one()


def stats(sent) -> dict:
    db.session().expire_all()
    return campaign_stats(db.session(), sent.campaign_id)


def test_duplicates_are_counted_once(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    delivered = event("delivered", sent)
    assert post_events([delivered]).json == {"received": 1, "queued": 1}
    again = post_events([delivered, delivered])  # SendGrid retried, with another neighbour
    assert again.json == {"received": 2, "queued": 2}  # the job sorts them out
    # The same event re-sent under a new sg_event_id is still the same event.
    renamed = {**delivered, "sg_event_id": "a-brand-new-id"}
    post_events([renamed])
    # ...whereas an event without sg_event_id falls back to the content hash.
    anonymous = event("open", sent)
    del anonymous["sg_event_id"]
    post_events([anonymous, dict(anonymous)])
    run_jobs()
    figures = stats(sent)
    assert figures["delivered"] == 1 and figures["opens"] == 1
    assert db.session().scalar(select(func.count()).select_from(WebhookEventKey)) == 2
    # Applied later again (SendGrid retries for a day): still nothing new.
    post_events([delivered, renamed, anonymous])
    run_jobs()
    assert stats(sent) == figures
    assert db.session().scalar(select(func.count()).select_from(WebhookBatch)) == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # RQ: no job runs yet
def test_the_same_body_posted_again_while_it_waits_is_queued_once(
        post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    body = json_body([event("delivered", sent), event("open", sent)])
    assert post_events(body).json == {"received": 2, "queued": 2}
    assert post_events(body).json == {"received": 2, "queued": 0}
    assert db.session().scalar(select(func.count()).select_from(WebhookBatch)) == 1
    run_jobs()
    assert stats(sent)["delivered"] == 1 and stats(sent)["opens"] == 1


def test_applied_events_leave_no_address_behind(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    post_events([event("delivered", sent), event("open", sent), event("bounce", sent)])
    run_jobs()
    session = db.session()
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(WebhookBatch)) == 0
    kept = [value for row in session.execute(select(WebhookEventKey.__table__))
            for value in row]
    assert len(kept) == 3 * 3  # three events: two keys and a time each
    assert not any(sent.emails[0].split("@")[0] in str(value) for value in kept)


def test_processing_is_idempotent(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    post_events([event("delivered", sent), event("click", sent, url="https://x.example/a"),
                 event("spamreport", sent)])
    post_events([event("open", sent)])  # a second job is queued for this one
    run_jobs()
    first = stats(sent)
    ledger = len(fresh(Subscriber, sent.subscriber_ids[0]).consent_records)
    assert first["clicks"] == 1 and first["opens"] == 1 and first["spam_reports"] == 1
    assert process_events() == 0  # a job run again finds nothing pending
    assert stats(sent) == first
    assert len(fresh(Subscriber, sent.subscriber_ids[0]).consent_records) == ledger
    assert db.session().scalar(select(func.count()).select_from(WebhookBatch)) == 0
    assert db.session().scalar(select(func.count()).select_from(WebhookEventKey)) == 4
    assert first["top_links"] == [{"url": "https://x.example/a", "clicks": 1}]


def test_hard_bounce_suppresses_and_a_new_signup_changes_nothing(
    post_events, run_jobs, sent_campaign, client, sink
):
    sent = sent_campaign(2)
    post_events([event("bounce", sent, 0, reason="550 5.1.1 no such user", type="bounce")])
    run_jobs()
    subscriber = fresh(Subscriber, sent.subscriber_ids[0])
    assert subscriber.status == SubscriberStatus.bounced
    assert is_suppressed(db.session(), sent.emails[0])
    assert not is_suppressed(db.session(), sent.emails[1])
    suppression = db.session().scalars(select(Suppression)).one()
    assert suppression.reason == SuppressionReason.bounce
    assert suppression.email == sent.emails[0]
    assert "550 5.1.1" in suppression.note
    records = [(r.action, r.actor) for r in subscriber.consent_records]
    assert ("bounced", "webhook") in records
    assert delivery(sent).event_status == "bounce"
    assert delivery(sent).reason == "550 5.1.1 no such user"

    sink.clear()
    response = client.post("/api/v1/subscriptions",
                           json={"email": sent.emails[0], "lists": ["action-alerts"]})
    assert response.status_code == 202 and response.json == {"status": "pending"}
    run_jobs()
    assert sink.messages() == []
    subscriber = fresh(Subscriber, sent.subscriber_ids[0])
    assert subscriber.status == SubscriberStatus.bounced
    assert is_suppressed(db.session(), sent.emails[0])
    assert stats(sent)["bounces"] == 1


def test_spam_report_suppresses_and_unsubscribes_from_everything(
    post_events, run_jobs, sent_campaign, client, sink
):
    sent = sent_campaign(1)
    post_events([event("delivered", sent), event("spamreport", sent)])
    run_jobs()
    subscriber = fresh(Subscriber, sent.subscriber_ids[0])
    assert subscriber.status == SubscriberStatus.complained
    assert {s.status for s in subscriber.subscriptions} == {SubscriptionStatus.unsubscribed}
    assert len(subscriber.subscriptions) == 2
    assert is_suppressed(db.session(), sent.emails[0])
    assert db.session().scalars(select(Suppression)).one().reason == SuppressionReason.complaint
    unsubscribed = [r for r in subscriber.consent_records if r.action == "unsubscribed"]
    assert len(unsubscribed) == 2 and {r.actor for r in unsubscribed} == {"webhook"}

    sink.clear()
    response = client.post("/api/v1/subscriptions",
                           json={"email": sent.emails[0], "lists": ["newsletter"]})
    assert response.status_code == 202
    run_jobs()
    assert sink.messages() == []
    subscriber = fresh(Subscriber, sent.subscriber_ids[0])
    assert {s.status for s in subscriber.subscriptions} == {SubscriptionStatus.unsubscribed}
    assert stats(sent)["spam_reports"] == 1


def test_unsubscribe_events(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(2)
    post_events([event("group_unsubscribe", sent, 0), event("unsubscribe", sent, 1)])
    run_jobs()
    first = fresh(Subscriber, sent.subscriber_ids[0])
    # group_unsubscribe: the campaign's lists only (action-alerts), not the newsletter.
    assert {s.mailing_list.slug: s.status.value for s in first.subscriptions} == {
        "action-alerts": "unsubscribed", "newsletter": "confirmed"}
    second = fresh(Subscriber, sent.subscriber_ids[1])
    assert {s.status for s in second.subscriptions} == {SubscriptionStatus.unsubscribed}
    assert second.status == SubscriberStatus.active  # not suppressed: may sign up again
    assert not is_suppressed(db.session(), sent.emails[1])
    assert stats(sent)["unsubscribes"] == 2


def test_soft_bounces_suppress_after_the_configured_number(
    make_app, signer, sent_campaign, run_jobs, app
):
    sent = sent_campaign(2)
    from .events import URL, json_body

    client = app.test_client()
    now = int(time.time())
    # The window counts from the events' own timestamps.
    four = [event("deferred", sent, 0, response="451 try later", timestamp=now - 100 - i)
            for i in range(4)]
    old = event("deferred", sent, 0, timestamp=now - 8 * 86400)  # outside the 7-day window
    four.append(old)
    body = json_body(four)
    assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 200
    run_jobs()
    assert not is_suppressed(db.session(), sent.emails[0])
    assert delivery(sent).event_status == "deferred"
    body = json_body([event("blocked", sent, 0, reason="554 blocked", timestamp=now),
                      event("deferred", sent, 1, timestamp=now)])
    assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 200
    run_jobs()
    assert is_suppressed(db.session(), sent.emails[0])
    assert not is_suppressed(db.session(), sent.emails[1])
    suppression = db.session().scalars(select(Suppression)).one()
    assert suppression.reason == SuppressionReason.soft_bounce
    assert db.session().scalar(select(func.count()).select_from(SoftBounce)) == 7
    records = fresh(Subscriber, sent.subscriber_ids[0]).consent_records
    assert [(r.action, r.actor) for r in records] == [("suppressed", "webhook")]


def test_dropped_is_recorded_with_its_reason(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    post_events([event("dropped", sent, reason="Bounced Address")])
    run_jobs()
    assert delivery(sent).event_status == "dropped"
    assert delivery(sent).reason == "Bounced Address"
    assert stats(sent)["dropped"] == 1


def test_events_out_of_order(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(2)
    open_event = event("open", sent, 0)
    delivered = event("delivered", sent, 0, timestamp=open_event["timestamp"] - 5)
    post_events([open_event])
    run_jobs()
    assert delivery(sent, 0).event_status == "open"
    post_events([delivered, event("click", sent, 0, url="https://x.example/act")])
    run_jobs()
    assert delivery(sent, 0).event_status == "click"
    post_events([event("delivered", sent, 0), event("open", sent, 0)])  # late, repeated
    run_jobs()
    assert delivery(sent, 0).event_status == "click"
    assert delivery(sent, 1).event_status == ""
    figures = stats(sent)
    assert figures["delivered"] == 2 and figures["opens"] == 2
    assert figures["unique_opens"] == 1 and figures["unique_clicks"] == 1


def test_unknown_and_erased_subscribers_are_counted_without_personal_data(
    post_events, run_jobs, sent_campaign
):
    sent = sent_campaign(1)
    session = db.session()
    session.delete(session.get(Subscriber, sent.subscriber_ids[0]))  # erased
    session.commit()
    post_events([
        event("delivered", sent),
        event("bounce", sent),
        event("spamreport", sent),
        event("bounce", None),  # an address we never had, no custom_args
        {**event("bounce", None), "campaign_id": "99999", "subscriber_id": "abc"},
    ])
    run_jobs()
    assert db.session().scalar(select(func.count()).select_from(Suppression)) == 0
    assert db.session().scalar(select(func.count()).select_from(Subscriber)) == 0
    assert db.session().scalar(select(func.count()).select_from(ConsentRecord)) == 0
    figures = stats(sent)
    assert figures["delivered"] == 1 and figures["bounces"] == 1
    assert figures["spam_reports"] == 1


def test_a_retried_batch_gets_stuck_events_processed(post_events, run_jobs, sent_campaign):
    """A batch stored but never queued (Redis down after commit) is picked up when SendGrid
    retries it, although the body is then already waiting."""
    from service.webhooks.ingest import store_batch

    sent = sent_campaign(1)
    batch = [event("delivered", sent), event("open", sent)]
    session = db.session()
    assert store_batch(session, json_body(batch), batch)  # stored, no job queued
    session.commit()
    run_jobs()
    assert stats(sent)["delivered"] == 0
    assert post_events(json_body(batch)).json == {"received": 2, "queued": 0}
    run_jobs()
    assert stats(sent)["delivered"] == 1 and stats(sent)["opens"] == 1
    assert delivery(sent).event_status == "open"


def test_a_bounce_of_type_blocked_is_soft(post_events, run_jobs, sent_campaign):
    sent = sent_campaign(1)
    post_events([event("bounce", sent, type="blocked", reason="421 rate limited",
                       timestamp=int(time.time()))])
    run_jobs()
    assert not is_suppressed(db.session(), sent.emails[0])
    assert fresh(Subscriber, sent.subscriber_ids[0]).status == SubscriberStatus.active
    assert db.session().scalars(select(SoftBounce)).one().reason == "421 rate limited"


def test_keys_older_than_sendgrid_s_retries_are_pruned(post_events, run_jobs, sent_campaign):
    from datetime import timedelta

    from service.webhooks.ingest import KEEP_KEYS, content_key, dedup_key, prune_keys

    sent = sent_campaign(1)
    old, recent = event("delivered", sent), event("open", sent)
    post_events([old, recent])
    run_jobs()
    session = db.session()
    def key(e: dict) -> bytes:
        return dedup_key(e, content_key(e))

    session.execute(update(WebhookEventKey).where(WebhookEventKey.dedup_key == key(old))
        .values(received_at=utcnow() - KEEP_KEYS - timedelta(minutes=1)))
    session.commit()
    import worker

    worker.recovery_pass()  # a worker's periodic pass prunes
    session.expire_all()
    kept = session.scalars(select(WebhookEventKey.dedup_key)).all()
    assert kept == [key(recent)]
    assert prune_keys(session) == 0
    post_events([recent])  # still within the window: still a duplicate
    run_jobs()
    assert stats(sent)["opens"] == 1
