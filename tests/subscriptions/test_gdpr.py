"""GDPR: export as a download, erase, and what an erased address may and may not do."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from service import db
from service.models import (
    AuditRecord,
    CampaignKind,
    ConsentRecord,
    DeliveryStatus,
    Subscriber,
    Subscription,
    Suppression,
    SuppressionReason,
)
from service.subscribers import email_hash, is_erased_or_suppressed, is_suppressed
from service.tokens import export_url, preferences_url, unsubscribe_url
from tests import factories
from tests.factories import signed_up, suppression

from .links import path_of


@pytest.fixture
def ana(client, run_jobs, sink):
    return signed_up(client, run_jobs, sink, "Ana@Example.org", ["action-alerts"],
                     "es", first_name="Ana", postal_code="94110")


def count(model) -> int:
    return int(db.session().scalar(select(func.count()).select_from(model)))


def test_export_download(app, client, ana):
    campaign = factories.campaign("Spring alert", kind=CampaignKind.alert, subject="Call now",
                                  body="Call", commit=False)
    factories.delivery(campaign.id, ana.id, DeliveryStatus.sent, event_status="delivered")

    page = client.get(path_of(preferences_url(ana.id))).get_data(as_text=True)
    link = re.search(r'href="(/export/[^"]+)"', page)
    assert link
    response = client.get(link.group(1))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="my-data-')
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data(as_text=True))
    assert data["profile"]["email"] == "Ana@example.org"
    assert data["profile"]["state"] == "CA" and data["profile"]["locale"] == "es"
    assert [(s["list"], s["status"]) for s in data["subscriptions"]] == [
        ("action-alerts", "confirmed")]
    assert [c["action"] for c in data["consent_records"]] == ["signup", "confirm"]
    assert data["deliveries"] == [{"campaign": "Spring alert", "subject": "Call now",
                                   "status": "sent", "sent_at": None,
                                   "last_event": "delivered"}]
    good = link.group(1)
    # change a character well inside the signature: the last base64 character can carry
    # unused bits, so changing it may leave the decoded signature the same
    tampered = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    assert client.get(tampered).status_code == 400


def test_erase_needs_the_box_ticked(app, client, ana):
    url = path_of(preferences_url(ana.id))
    assert client.post(url, data={"action": "erase"}).status_code == 422
    assert db.session().get(Subscriber, ana.id) is not None


def test_erase_then_fresh_signup_is_new_consent(app, client, run_jobs, sink, ana):
    ana_id = ana.id
    export = path_of(export_url(ana_id))
    prefs = path_of(preferences_url(ana_id))
    unsub = path_of(unsubscribe_url(ana_id))
    erased = client.post(prefs, data={"action": "erase", "confirm_erase": "yes"})
    assert erased.status_code == 200
    assert "Tus datos han sido borrados" in erased.get_data(as_text=True)

    session = db.session()
    session.expire_all()
    assert session.get(Subscriber, ana_id) is None
    assert count(Subscriber) == count(Subscription) == count(ConsentRecord) == 0
    [row] = session.scalars(select(Suppression)).all()
    assert (row.reason, row.email) == (SuppressionReason.erased, "")
    assert row.email_hash == email_hash("ana@example.org")
    assert session.scalars(select(AuditRecord.action)).all() == ["subscriber.erase"]
    # Every old link is dead; the export has nothing to give.
    assert client.get(export).status_code == 404
    assert client.get(prefs).status_code == 404
    assert client.post(unsub).status_code == 404

    # Imports and staff additions refuse the address; the person's own signup does not.
    assert is_erased_or_suppressed(session, "ANA@example.org")
    assert is_suppressed(session, "ana@example.org")
    assert not is_suppressed(session, "ana@example.org", include_erased=False)

    again = signed_up(client, run_jobs, sink, "ana@example.org", ["newsletter"])
    assert count(Subscriber) == 1
    assert [c.action for c in again.consent_records] == ["signup", "confirm"]
    assert count(Suppression) == 0  # confirmed new consent removes the erased marker
    assert not is_erased_or_suppressed(db.session(), "ana@example.org")


def test_erased_marker_stays_until_confirmation(app, client, run_jobs, sink, ana):
    client.post(path_of(preferences_url(ana.id)), data={"action": "erase", "confirm_erase": "yes"})
    client.post("/subscribe", data={"email": "ana@example.org", "lists": "newsletter"})
    run_jobs()
    assert len(sink.messages()) == 1  # the confirmation mail does go out
    assert is_erased_or_suppressed(db.session(), "ana@example.org")


def test_bounce_suppression_still_blocks_signup(app, client, run_jobs, sink):
    suppression("gone@example.org", SuppressionReason.bounce)
    assert client.post("/subscribe", data={"email": "gone@example.org",
                                           "lists": "newsletter"}).status_code == 303
    run_jobs()
    assert sink.messages() == [] and count(Subscriber) == 0


def test_erasing_a_bounced_address_keeps_the_bounce(app, client, ana):
    suppression(ana.email, SuppressionReason.bounce)
    session = db.session()
    client.post(path_of(preferences_url(ana.id)), data={"action": "erase", "confirm_erase": "yes"})
    session.expire_all()
    [row] = session.scalars(select(Suppression)).all()
    assert (row.reason, row.email) == (SuppressionReason.bounce, "")


def test_links_of_an_erased_person_never_reach_a_later_one(app, client, run_jobs, sink, ana):
    """SQLite hands the erased id to the next subscriber: old links must not follow it."""
    old_links = [path_of(preferences_url(ana.id)), path_of(export_url(ana.id))]
    old_unsub = path_of(unsubscribe_url(ana.id))
    client.post(old_links[0], data={"action": "erase", "confirm_erase": "yes"})
    import time

    time.sleep(1.05)  # token timestamps have whole-second precision
    bo = signed_up(client, run_jobs, sink, "bo@example.org", ["newsletter"])
    for link in old_links:
        assert client.get(link).status_code == 404
    assert client.post(old_unsub).status_code == 404
    assert [s.status.value for s in bo.subscriptions] == ["confirmed"]
    assert client.get(path_of(preferences_url(bo.id))).status_code == 200
