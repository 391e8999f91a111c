"""Actions (distinct subscribers who clicked the campaign's action URL), the action rate, and
the figures per subscriber language and state, from signed events through the webhook."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service import db
from service.models import Campaign, Subscriber
from service.webhooks.effects import normalise_url

from .events import event

ACTION = "https://act.example.org/petition"


@pytest.fixture
def campaign_with_people(sent_campaign):
    sent = sent_campaign(6)
    session = db.session()
    for i, person in enumerate(session.scalars(
            select(Subscriber).where(Subscriber.id.in_(sent.subscriber_ids))
            .order_by(Subscriber.id))):
        person.locale = "es" if i % 2 else "en"
        person.state = ["CA", "NY", ""][i % 3]
    campaign = session.get(Campaign, sent.campaign_id)
    assert campaign is not None
    campaign.action_url = ACTION
    session.commit()
    return sent


def test_actions_rate_and_breakdowns(client, api_token, post_events, run_jobs,
                                     campaign_with_people):
    sent = campaign_with_people
    events = [event("delivered", sent, i) for i in range(6)]
    events += [event("open", sent, i) for i in (0, 1, 2, 2)]
    events += [
        event("click", sent, 0, url="https://ACT.example.org/petition/?utm_source=email"),
        event("click", sent, 0, url=ACTION),  # the same person again: one action
        event("click", sent, 1, url="https://act.example.org:443/petition#sign"),
        event("click", sent, 2, url="https://act.example.org/other"),  # not the action
        event("click", sent, 3, url="https://act.example.org/petition?ref=x"),  # other query
    ]
    assert post_events(events).status_code == 200
    run_jobs()
    figures = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats",
                         headers=api_token("campaigner")).get_json()
    assert figures["delivered"] == 6
    assert figures["unique_clicks"] == 4 and figures["clicks"] == 5
    assert figures["actions"] == 2
    assert figures["action_rate"] == pytest.approx(2 / 6, abs=1e-6)
    assert figures["by_locale"] == {
        "en": {"delivered": 3, "unique_opens": 2, "unique_clicks": 2, "actions": 1},
        "es": {"delivered": 3, "unique_opens": 1, "unique_clicks": 2, "actions": 1},
    }
    assert figures["by_state"] == {
        "CA": {"delivered": 2, "unique_opens": 1, "unique_clicks": 2, "actions": 1},
        "NY": {"delivered": 2, "unique_opens": 1, "unique_clicks": 1, "actions": 1},
        "": {"delivered": 2, "unique_opens": 1, "unique_clicks": 1, "actions": 0},
    }
    # The same batch again, and the same events under new sg_event_ids: nothing changes.
    assert post_events(events).status_code == 200
    renamed = [{**e, "sg_event_id": e["sg_event_id"] + "-again"} for e in events]
    assert post_events(renamed).status_code == 200
    run_jobs()
    again = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats",
                       headers=api_token("campaigner")).get_json()
    assert again == figures


def test_without_an_action_url_there_are_no_actions(client, api_token, post_events, run_jobs,
                                                    sent_campaign):
    sent = sent_campaign(2)
    post_events([event("delivered", sent, 0), event("click", sent, 0, url=ACTION)])
    run_jobs()
    figures = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats",
                         headers=api_token("campaigner")).get_json()
    assert figures["actions"] == 0 and figures["action_rate"] == 0.0
    assert figures["by_locale"]["en"]["unique_clicks"] == 1


def test_no_events_no_breakdowns(client, api_token, sent_campaign):
    sent = sent_campaign(1)
    figures = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats",
                         headers=api_token("campaigner")).get_json()
    assert figures["by_locale"] == {} and figures["by_state"] == {}
    assert figures["actions"] == 0 and figures["action_rate"] == 0.0


@pytest.mark.parametrize(("url", "same"), [
    ("https://act.example.org/petition", True),
    ("HTTPS://Act.Example.org/petition/", True),
    ("https://act.example.org/petition?utm_source=x&utm_medium=y", True),
    ("https://act.example.org/petition#top", True),
    ("http://act.example.org/petition", False),
    ("https://act.example.org/petition?id=2", False),
    ("https://act.example.org:8443/petition", False),
    ("https://[::1/petition", False),
    ("\u202ehttps://act.example.org/petition", False),
])
def test_normalised_urls(url, same):
    assert (normalise_url(url) == normalise_url(ACTION)) is same


def test_hostile_click_urls_count_as_clicks_and_never_as_actions(
        client, api_token, post_events, run_jobs, campaign_with_people):
    sent = campaign_with_people
    hostile = ["http://[", "\x00" + ACTION, ACTION + "\u202e", {"url": ACTION}, [ACTION],
               10**30, "https://act.example.org/petition?" + "a=1&" * 900, "", None]
    events = [event("click", sent, i % 6, url=url) for i, url in enumerate(hostile)]
    events.append(event("bounce", sent, 5, type="bounce", reason="550\x00 no\u202e"))
    assert post_events(events).status_code == 200
    run_jobs()
    figures = client.get(f"/api/v1/campaigns/{sent.campaign_id}/stats",
                         headers=api_token("campaigner")).get_json()
    assert figures["clicks"] == len(hostile)
    assert figures["actions"] == 0
    assert figures["bounces"] == 1  # a NUL in the reason does not stop the job
