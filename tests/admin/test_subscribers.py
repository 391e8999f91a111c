"""Subscriber search, detail, edit, unsubscribe and add by hand."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from service import db
from service.db import utcnow
from service.models import (
    AuditRecord,
    ConsentRecord,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from service.subscribers import email_hash
from tests import factories
from tests.factories import consent_record, mailing_list, subscriber, suppression

from .signin import Staff

C = SubscriptionStatus.confirmed
P = SubscriptionStatus.pending


def emails_on(page: str) -> list[str]:
    return re.findall(r'href="/admin/subscribers/\d+">([^<]+)</a>', page)


def test_script_in_a_name_renders_as_text(staff: Callable[[str], Staff]) -> None:
    row = subscriber("x@example.org", first_name="<script>alert(1)</script>",
                     last_name='"><img src=x onerror=alert(2)>', lists={"newsletter": C})
    viewer = staff("viewer")
    for page in (viewer.get("/admin/subscribers").text,
                 viewer.get(f"/admin/subscribers/{row.id}").text):
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img src=x" not in page
    editor = staff("editor")  # the edit form puts the name in value="..."
    page = editor.get(f"/admin/subscribers/{row.id}").text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "<img src=x" not in page


def test_search_by_address_and_name_prefix(staff: Callable[[str], Staff]) -> None:
    subscriber("ana.garcia@example.org", first_name="Ana", last_name="García")
    subscriber("anabel@example.org", first_name="Anabel", last_name="Smith")
    subscriber("bob@example.org", first_name="Bob", last_name="Anaya")
    subscriber("carol@example.org", first_name="Carol", last_name="Jones")
    viewer = staff("viewer")

    def search(q: str) -> set[str]:
        return set(emails_on(viewer.get("/admin/subscribers", query_string={"q": q}).text))

    assert search("ana") == {"ana.garcia@example.org", "anabel@example.org", "bob@example.org"}
    assert search("ANA.G") == {"ana.garcia@example.org"}
    assert search("bob@") == {"bob@example.org"}
    assert search("ana garc") == {"ana.garcia@example.org"}
    assert search("jon") == {"carol@example.org"}
    assert search("%") == set()  # LIKE wildcards are searched literally
    assert search("_") == set()
    assert len(search("")) == 4


def test_filters(staff: Callable[[str], Staff]) -> None:
    subscriber("a@example.org", state="CA", locale="es", lists={"newsletter": C})
    subscriber("b@example.org", state="NY", locale="en", lists={"newsletter": P})
    subscriber("c@example.org", state="CA", locale="en", lists={"action-alerts": C})
    viewer = staff("viewer")

    def found(**args: str) -> set[str]:
        return set(emails_on(viewer.get("/admin/subscribers", query_string=args).text))

    assert found(list="newsletter") == {"a@example.org", "b@example.org"}
    assert found(list="newsletter", status="confirmed") == {"a@example.org"}
    assert found(status="confirmed") == {"a@example.org", "c@example.org"}
    assert found(state="CA") == {"a@example.org", "c@example.org"}
    assert found(lang="es") == {"a@example.org"}
    assert found(state="CA", lang="en", list="action-alerts") == {"c@example.org"}


def test_keyset_pagination_covers_everyone_once(staff: Callable[[str], Staff]) -> None:
    for i in range(120):
        subscriber(f"p{i:03d}@example.org", commit=False)
    db.session().commit()
    viewer = staff("viewer")
    seen: list[str] = []
    url = "/admin/subscribers?q=p"
    pages = 0
    while url:
        page = viewer.get(url).text
        seen += emails_on(page)
        pages += 1
        match = re.search(r'href="(/admin/subscribers\?[^"]*before=\d+[^"]*)">Older', page)
        url = match.group(1).replace("&amp;", "&") if match else ""
    assert pages == 3
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen[0] == "p119@example.org"  # newest first


def test_detail_shows_profile_subscriptions_and_ledger(staff: Callable[[str], Staff]) -> None:
    row = subscriber("dee@example.org", first_name="Dee", lists={"newsletter": C})
    consent_record(row, "signup", list_slug="newsletter", ip="203.0.113.9",
                   source="https://partner.example/form", actor="subscriber")
    page = staff("viewer").get(f"/admin/subscribers/{row.id}").text
    assert "dee@example.org" in page and "Dee" in page
    assert "203.0.113.9" in page and "https://partner.example/form" in page
    assert "Nothing sent to this subscriber yet" in page
    assert "Erase permanently" not in page  # erasing is for admins only
    assert "suppression list</a>: it is never mailed" not in page
    suppression("dee@example.org", SuppressionReason.bounce)
    page = staff("viewer").get(f"/admin/subscribers/{row.id}").text
    assert "suppression list</a>: it is never mailed" in page
    assert staff("viewer").get("/admin/subscribers/999999").status_code == 404


def test_edit_sets_state_from_postal_code(staff: Callable[[str], Staff]) -> None:
    row = subscriber("e@example.org", first_name="Old")
    editor = staff("editor")
    response = editor.post(f"/admin/subscribers/{row.id}/edit", {
        "first_name": "New", "last_name": "Name", "postal_code": "94110", "locale": "es"})
    assert response.status_code == 302
    saved = db.session().scalars(select(Subscriber).where(Subscriber.id == row.id)).one()
    db.session().refresh(saved)
    assert (saved.first_name, saved.last_name, saved.state, saved.locale) == (
        "New", "Name", "CA", "es")
    audit = db.session().scalars(
        select(AuditRecord).where(AuditRecord.action != "user.login")).one()
    assert audit.actor == f"staff:{editor.email}" and audit.action == "subscriber.edit"
    bad = editor.post(f"/admin/subscribers/{row.id}/edit", {
        "first_name": "x" * 101, "postal_code": "", "locale": "fr"})
    assert bad.status_code == 422


def test_viewer_cannot_edit(staff: Callable[[str], Staff]) -> None:
    row = subscriber("v@example.org", first_name="Keep")
    viewer = staff("viewer")
    page = viewer.get(f"/admin/subscribers/{row.id}").text
    assert "/edit" not in page  # no form for the viewer...
    response = viewer.post(f"/admin/subscribers/{row.id}/edit", {"first_name": "Changed"})
    assert response.status_code == 403  # ...and a forged POST is refused
    assert db.session().scalars(
        select(Subscriber.first_name).where(Subscriber.id == row.id)).one() == "Keep"


def test_unsubscribe_records_staff_consent(staff: Callable[[str], Staff]) -> None:
    row = subscriber("u@example.org", lists={"newsletter": C, "action-alerts": C})
    editor = staff("editor")
    newsletter = mailing_list("newsletter").id
    response = editor.post(f"/admin/subscribers/{row.id}/unsubscribe", {"list_id": newsletter})
    assert response.status_code == 302
    statuses = dict(db.session().execute(
        select(Subscription.list_id, Subscription.status)
        .where(Subscription.subscriber_id == row.id)).all())
    assert statuses[newsletter] == SubscriptionStatus.unsubscribed
    assert statuses[mailing_list("action-alerts").id] == SubscriptionStatus.confirmed
    record = db.session().scalars(select(ConsentRecord)).one()
    assert (record.action, record.actor, record.list_id) == (
        "unsubscribe", f"staff:{editor.email}", newsletter)


def test_add_by_hand_confirms_with_consent_note(staff: Callable[[str], Staff]) -> None:
    campaigner = staff("campaigner")
    lists = [mailing_list("newsletter").id, mailing_list("action-alerts").id]
    response = campaigner.post("/admin/subscribers/new", {
        "email": "Walk.In@Example.org", "first_name": "Walk", "postal_code": "10001",
        "locale": "en", "lists": lists, "consent_note": "Paper sheet, town hall 12 Nov"})
    assert response.status_code == 302
    row = db.session().scalars(select(Subscriber).where(
        Subscriber.email_key == "walk.in@example.org")).one()
    assert row.state == "NY"
    subs = db.session().scalars(select(Subscription).where(Subscription.subscriber_id == row.id)).all()
    assert {s.status for s in subs} == {SubscriptionStatus.confirmed} and len(subs) == 2
    records = db.session().scalars(select(ConsentRecord).where(
        ConsentRecord.subscriber_id == row.id)).all()
    assert len(records) == 2
    assert all(r.action == "staff" and r.note == "Paper sheet, town hall 12 Nov"
               and r.actor == f"staff:{campaigner.email}" for r in records)


def test_add_by_hand_refuses_missing_note_and_suppressed_address(
    staff: Callable[[str], Staff]
) -> None:
    suppression("gone@example.org", SuppressionReason.erased, keep_address=False)
    campaigner = staff("campaigner")
    newsletter = mailing_list("newsletter").id
    no_note = campaigner.post("/admin/subscribers/new", {
        "email": "new@example.org", "lists": [newsletter], "consent_note": " "})
    assert no_note.status_code == 422 and "how this person gave consent" in no_note.text
    suppressed = campaigner.post("/admin/subscribers/new", {
        "email": "Gone@example.org", "lists": [newsletter], "consent_note": "asked"})
    assert suppressed.status_code == 422 and "suppression list" in suppressed.text
    assert db.session().scalars(select(Subscriber)).all() == []
    assert staff("editor").post("/admin/subscribers/new", {
        "email": "x@example.org", "lists": [newsletter], "consent_note": "n"}
    ).status_code == 403


def test_dashboard_counts_chart_and_campaigns(staff: Callable[[str], Staff]) -> None:
    from service.models import CampaignKind, CampaignStatus

    now = utcnow()
    subscriber("d1@example.org", lists={"newsletter": C})
    subscriber("d2@example.org", lists={"newsletter": P}, created_at=now - timedelta(days=10))
    subscriber("d3@example.org", created_at=now - timedelta(days=200))
    factories.campaign("Vote on SB 42", kind=CampaignKind.alert, subject="s", body="b",
                       status=CampaignStatus.draft)
    page = staff("viewer").get("/admin/").text
    assert page.count('class="bar"') == 90
    assert f"{now.date().isoformat()}: 1" in page
    assert f"{(now - timedelta(days=10)).date().isoformat()}: 1" in page
    assert "(2 new subscribers" in page
    assert "Vote on SB 42" in page and "badge draft" in page
    assert re.search(r'status=confirmed">1<', page)


def test_admin_erases_on_request(staff: Callable[[str], Staff]) -> None:
    row = subscriber("erase.me@example.org", first_name="Gone", lists={"newsletter": C})
    consent_record(row, "signup")
    assert staff("campaigner").post(f"/admin/subscribers/{row.id}/erase", {
        "confirm_email": "erase.me@example.org"}).status_code == 403
    admin = staff("admin")
    assert "Erase permanently" in admin.get(f"/admin/subscribers/{row.id}").text
    mistyped = admin.post(f"/admin/subscribers/{row.id}/erase", {"confirm_email": "erase.me@"})
    assert mistyped.status_code == 302
    assert db.session().get(Subscriber, row.id) is not None
    done = admin.post(f"/admin/subscribers/{row.id}/erase", {
        "confirm_email": "Erase.Me@example.org"})
    assert done.status_code == 302 and done.location == "/admin/subscribers"
    session = db.session()
    assert session.scalars(select(Subscriber)).all() == []
    assert session.scalars(select(ConsentRecord)).all() == []
    marker = session.scalars(select(Suppression)).one()
    assert (marker.reason, marker.email) == (SuppressionReason.erased, "")
    assert marker.email_hash == email_hash("erase.me@example.org")
    record = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "subscriber.erase")).one()
    assert record.actor == f"staff:{admin.email}"
    assert "Gone" not in str(record.detail)
    # Staff cannot add the erased address back by hand.
    again = staff("campaigner").post("/admin/subscribers/new", {
        "email": "erase.me@example.org", "lists": [mailing_list("newsletter").id],
        "consent_note": "phoned in"})
    assert again.status_code == 422
