"""The circuit breaker: signed events through the real webhook endpoint pause a sending
campaign whose hard bounces or spam reports run above their limit of the delivered mails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.db import utcnow
from service.models import AuditRecord, Campaign, CampaignStatus
from tests.factories import Sent

from .events import event

Post = Callable[..., Any]


@pytest.fixture
def sending(sent_campaign: Callable[..., Sent]) -> Callable[[int], Sent]:
    """A campaign still sending to n people (delivered events are about to arrive)."""

    def make(n: int) -> Sent:
        sent = sent_campaign(n)
        campaign = db.session().get(Campaign, sent.campaign_id)
        assert campaign is not None
        campaign.status = CampaignStatus.sending
        campaign.started_at = utcnow()  # just started: the recovery pass leaves it alone
        db.session().commit()
        return sent

    return make


def deliver(post_events: Post, sent: Sent, people: range) -> None:
    for start in range(people.start, people.stop, 500):
        chunk = range(start, min(start + 500, people.stop))
        assert post_events([event("delivered", sent, i) for i in chunk]).status_code == 200


def status(client: FlaskClient, api_token: Any, campaign_id: int) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"/api/v1/campaigns/{campaign_id}",
                                      headers=api_token("campaigner")).get_json()
    return data


def test_bounces_for_a_tenth_of_the_first_thousand_pause_the_campaign(
        client, api_token, post_events, run_jobs, sending):
    sent = sending(1000)
    deliver(post_events, sent, range(1000))
    bounces = [event("bounce", sent, i, type="bounce", status="5.1.1",
                     reason="550 5.1.1 No such user") for i in range(0, 1000, 10)]
    assert post_events(bounces).json == {"received": 100, "queued": 100}
    run_jobs()

    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] == "paused"
    reason = shown["paused_reason"]
    assert "100 hard bounces in 1,000 delivered mails (10.0%" in reason
    assert "5.0%" in reason  # the limit it went over
    audit = db.session().scalars(select(AuditRecord).where(
        AuditRecord.object_id == str(sent.campaign_id),
        AuditRecord.action.in_(["campaign.pause", "campaign.breaker"]))).all()
    assert {a.action for a in audit} == {"campaign.pause", "campaign.breaker"}
    assert {a.actor for a in audit} == {"circuit-breaker"}
    breaker = next(a for a in audit if a.action == "campaign.breaker")
    assert breaker.detail["hard_bounces"] == 100 and breaker.detail["delivered"] == 1000

    # A person resumes it: the reason goes.
    resumed = client.post(f"/api/v1/campaigns/{sent.campaign_id}/resume",
                          headers=api_token("campaigner"))
    assert resumed.status_code == 202, resumed.get_json()
    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] == "sending" and shown["paused_reason"] is None
    # The same bounces posted again (SendGrid retrying) change nothing.
    assert post_events(bounces).status_code == 200
    run_jobs()
    assert status(client, api_token, sent.campaign_id)["status"] == "sending"


def test_below_the_bounce_limit_nothing_is_paused(client, api_token, post_events, run_jobs,
                                                  sending):
    sent = sending(1000)
    deliver(post_events, sent, range(1000))
    # 50 of 1,000 is exactly the limit (5 %): not above it. Blocked bounces are not hard.
    post_events([event("bounce", sent, i, type="bounce") for i in range(50)]
                + [event("bounce", sent, i, type="blocked") for i in range(50, 150)]
                + [event("spamreport", sent, i) for i in range(200, 202)])
    run_jobs()
    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] == "sending" and shown["paused_reason"] is None


def test_spam_reports_above_their_limit_pause(client, api_token, post_events, run_jobs,
                                              sending):
    sent = sending(1000)
    deliver(post_events, sent, range(1000))
    post_events([event("spamreport", sent, i) for i in range(3)])
    run_jobs()
    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] == "paused"
    assert "3 spam reports in 1,000 delivered mails (0.30%" in shown["paused_reason"]


def test_below_the_minimum_sample_nothing_is_judged_until_it_is_reached(
        client, api_token, post_events, run_jobs, sending):
    sent = sending(600)
    deliver(post_events, sent, range(499))
    post_events([event("bounce", sent, i, type="bounce") for i in range(200)])
    run_jobs()
    assert status(client, api_token, sent.campaign_id)["status"] == "sending"
    deliver(post_events, sent, range(499, 500))  # the 500th delivered mail
    run_jobs()
    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] == "paused"
    assert "200 hard bounces in 500 delivered mails (40.0%" in shown["paused_reason"]


def test_a_finished_campaign_is_left_alone(client, api_token, post_events, run_jobs,
                                           sent_campaign):
    sent = sent_campaign(600)  # status draft/sent: not sending
    deliver(post_events, sent, range(600))
    post_events([event("bounce", sent, i, type="bounce") for i in range(300)])
    run_jobs()
    shown = status(client, api_token, sent.campaign_id)
    assert shown["status"] != "paused" and shown["paused_reason"] is None


def test_the_limits_are_settings():
    from service.config import Settings

    assert (Settings.breaker_min_sample, Settings.breaker_bounce_rate,
            Settings.breaker_complaint_rate) == (500, 0.05, 0.002)
    settings = Settings.from_env({"BREAKER_MIN_SAMPLE": "10", "BREAKER_BOUNCE_RATE": "0.5",
                                  "BREAKER_COMPLAINT_RATE": "0.01"})
    assert (settings.breaker_min_sample, settings.breaker_bounce_rate,
            settings.breaker_complaint_rate) == (10, 0.5, 0.01)
