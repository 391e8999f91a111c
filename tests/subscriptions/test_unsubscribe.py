"""Unsubscribe links: the page, RFC 8058 one-click, "from everything", undo, a real mail."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service import db
from service.db import utcnow
from service.mail.base import OutgoingMail, Personalization
from service.models import ConsentRecord, Subscription
from service.tokens import list_unsubscribe_headers, unsubscribe_url
from tests.factories import list_ids, signed_up
from tests.queries import actions, statuses

from .links import ONE_CLICK, path_of


@pytest.fixture
def both(client, run_jobs, sink):
    return signed_up(client, run_jobs, sink, "pat@example.org",
                     ["action-alerts", "newsletter"])


def test_get_names_the_lists_and_changes_nothing(app, client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    before = actions(both.id)
    for _ in range(2):
        page = client.get(url)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Monthly newsletter" in html and "Action alerts" not in html
        assert "Unsubscribe from everything" in html and "/preferences/" in html
        assert client.head(url).status_code == 200
    assert statuses(both.id) == {"action-alerts": "confirmed", "newsletter": "confirmed"}
    assert actions(both.id) == before


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_one_click_without_cookies(app, both, kind):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter"), campaign_id=7))
    bare = app.test_client(use_cookies=False)

    def post():
        if kind == "urlencoded":
            return bare.post(url, data=ONE_CLICK,
                             content_type="application/x-www-form-urlencoded")
        return bare.post(url, data={"List-Unsubscribe": "One-Click"},
                         content_type="multipart/form-data")

    for _ in range(2):  # idempotent
        response = post()
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert "Set-Cookie" not in response.headers
    # Immediate effect: the row a campaign batch reads is already unsubscribed.
    assert statuses(both.id) == {"action-alerts": "confirmed", "newsletter": "unsubscribed"}
    unsub = [a for a in actions(both.id) if a[0] == "unsubscribe"]
    assert unsub == [("unsubscribe", "one-click")]
    record = db.session().scalars(select(ConsentRecord).where(
        ConsentRecord.action == "unsubscribe")).one()
    assert (record.endpoint, record.source) == ("unsubscribe-one-click", "campaign 7")
    sub = db.session().scalars(select(Subscription).where(
        Subscription.subscriber_id == both.id, Subscription.list_id == list_ids("newsletter")[0]
    )).one()
    assert sub.unsubscribed_at is not None


def test_button_and_from_everything(app, client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    done = client.post(url, data={"scope": "all"})
    assert done.status_code == 200
    assert statuses(both.id) == {"action-alerts": "unsubscribed", "newsletter": "unsubscribed"}
    assert sorted(a for a in actions(both.id) if a[0] == "unsubscribe") == [
        ("unsubscribe", "link"), ("unsubscribe", "link")]
    assert "Undo" in done.get_data(as_text=True)


def test_token_without_lists_means_everything(app, client, both):
    assert client.post(path_of(unsubscribe_url(both.id))).status_code == 200
    assert set(statuses(both.id).values()) == {"unsubscribed"}


def test_undo_within_window_restores_without_confirmation(app, client, both, sink):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    page = client.post(url).get_data(as_text=True)
    assert 'name="undo"' in page
    receipt = re.search(r'name="receipt" value="([^"]+)"', page).group(1)
    for odd in ({"lists": ["²", "-1", "x"]}, {"receipt": "x"}, {"receipt": receipt + "x"}):
        answer = client.post(url, data={"undo": "1", **odd})
        assert answer.status_code == 200 and "too late" in answer.get_data(as_text=True)
    client.post(url)  # a repeat changes nothing, and the first page's undo still works
    undone = client.post(url, data={"undo": "1", "receipt": receipt})
    assert undone.status_code == 200 and "Welcome back" in undone.get_data(as_text=True)
    assert statuses(both.id) == {"action-alerts": "confirmed", "newsletter": "confirmed"}
    assert actions(both.id)[-1] == ("resubscribe", "undo")
    assert sink.messages() == []  # no new confirmation round


def test_undo_after_window_changes_nothing(app, client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    page = client.post(url).get_data(as_text=True)
    receipt = re.search(r'name="receipt" value="([^"]+)"', page).group(1)
    session = db.session()
    session.execute(update(Subscription).where(Subscription.subscriber_id == both.id)
                    .values(unsubscribed_at=utcnow() - timedelta(minutes=31)))
    session.commit()
    late = client.post(url, data={"undo": "1", "receipt": receipt})
    assert late.status_code == 200 and "too late" in late.get_data(as_text=True)
    assert statuses(both.id)["newsletter"] == "unsubscribed"


def test_spanish_page_for_a_spanish_subscriber(app, client, run_jobs, sink):
    ana = signed_up(client, run_jobs, sink, "ana@example.org", ["action-alerts"], "es")
    url = path_of(unsubscribe_url(ana.id, list_ids("action-alerts")))
    html = client.get(url).get_data(as_text=True)
    assert "Dejarás de recibir" in html and "Alertas de acción" in html
    done = client.post(url).get_data(as_text=True)
    assert "Te has dado de baja" in done and "Deshacer" in done


def test_list_unsubscribe_header_of_a_sent_mail_works_over_http(app, client, both, sink):
    headers = list_unsubscribe_headers(both.id, list_ids("action-alerts"), campaign_id=3)
    mail = OutgoingMail(
        subject="Call your senator", html="<p>Call</p>", text="Call",
        from_email="alerts@example.org", from_name="Drug Policy Action",
        personalizations=[Personalization(email=both.email, headers=headers)],
    )
    app.extensions["mail_transport"].send(mail)
    [recorded] = sink.messages()
    header = recorded["headers"]["List-Unsubscribe"]
    assert recorded["headers"]["List-Unsubscribe-Post"] == ONE_CLICK
    assert header.startswith("<http://localhost/unsubscribe/") and header.endswith(">")
    bare = app.test_client(use_cookies=False)
    response = bare.post(path_of(header[1:-1]), data=ONE_CLICK,
                         content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and "Location" not in response.headers
    assert statuses(both.id) == {"action-alerts": "unsubscribed", "newsletter": "confirmed"}
