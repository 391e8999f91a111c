"""The undo on an unsubscribe page restores what that page's unsubscribe stopped, and
nothing else: not other lists, not what staff (or a bounce, or the person elsewhere)
stopped, not someone else's lists."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from service import db
from service.db import utcnow
from service.models import Subscription
from service.subscribers import Evidence
from service.subscriptions.staff_changes import unsubscribe as staff_unsubscribe
from service.tokens import unsubscribe_url
from tests.factories import list_id, list_ids, signed_up
from tests.queries import statuses

from .links import path_of

STAFF = Evidence(ip="", user_agent="", source="admin", endpoint="admin.unsubscribe",
                 consent_text_version="", actor="staff@example.org")


@pytest.fixture
def both(client, run_jobs, sink):
    return signed_up(client, run_jobs, sink, "pat@example.org", ["action-alerts", "newsletter"])


def undo_form(page: str) -> dict[str, list[str]]:
    """The hidden fields of the page's undo form."""
    form = page[page.index('name="undo"') - 200:]
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        fields.setdefault(name, []).append(value)
    return fields


def by_staff(person, slug):
    session = db.session()
    session.expire_all()
    assert staff_unsubscribe(session, person, list_id(slug), STAFF)
    session.commit()


def test_the_page_undoes_its_own_unsubscribe(client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    form = undo_form(client.post(url).text)
    undone = client.post(url, data=form)
    assert "Welcome back" in undone.text and "Monthly newsletter" in undone.text
    assert statuses(both.id) == {"action-alerts": "confirmed", "newsletter": "confirmed"}


def test_forged_lists_restore_nothing_outside_the_action(client, both):
    by_staff(both, "action-alerts")  # staff stopped it a minute ago
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    form = undo_form(client.post(url).text)
    everything = [str(i) for i in list_ids("action-alerts", "newsletter")]
    client.post(url, data={**form, "lists": everything})
    client.post(url, data={"undo": "1", "lists": everything})
    client.post(url, data={"undo": "1"})
    assert statuses(both.id) == {"action-alerts": "unsubscribed", "newsletter": "confirmed"}


def test_an_everything_link_leaves_a_staff_unsubscribe_alone(client, both):
    by_staff(both, "action-alerts")
    url = path_of(unsubscribe_url(both.id))  # a link for every list
    page = client.post(url).text
    assert statuses(both.id) == {"action-alerts": "unsubscribed", "newsletter": "unsubscribed"}
    client.post(url, data={"undo": "1"})
    assert statuses(both.id)["action-alerts"] == "unsubscribed"
    client.post(url, data=undo_form(page))
    assert statuses(both.id) == {"action-alerts": "unsubscribed", "newsletter": "confirmed"}


def test_a_later_staff_unsubscribe_is_not_undone(client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    form = undo_form(client.post(url).text)
    session = db.session()  # the person came back, then staff stopped the list again
    session.execute(update(Subscription).where(Subscription.subscriber_id == both.id)
                    .values(status="confirmed", unsubscribed_at=None))
    session.commit()
    by_staff(both, "newsletter")
    assert "too late" in client.post(url, data=form).text
    assert statuses(both.id)["newsletter"] == "unsubscribed"


def test_a_receipt_works_only_for_its_own_person(client, run_jobs, sink, both):
    other = signed_up(client, run_jobs, sink, "sam@example.org", ["newsletter"])
    form = undo_form(client.post(path_of(unsubscribe_url(both.id, list_ids("newsletter")))).text)
    other_url = path_of(unsubscribe_url(other.id, list_ids("newsletter")))
    client.post(other_url)
    assert "too late" in client.post(other_url, data=form).text
    assert statuses(other.id) == {"newsletter": "unsubscribed"}


def test_after_the_window_nothing_is_undone(client, both):
    url = path_of(unsubscribe_url(both.id, list_ids("newsletter")))
    form = undo_form(client.post(url).text)
    session = db.session()
    session.execute(update(Subscription).where(Subscription.subscriber_id == both.id)
                    .values(unsubscribed_at=utcnow() - timedelta(minutes=31)))
    session.commit()
    assert "too late" in client.post(url, data=form).text
    assert statuses(both.id)["newsletter"] == "unsubscribed"
