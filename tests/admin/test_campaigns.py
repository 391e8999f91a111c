"""Campaign pages of the admin: editor, live preview and count, test send, send, schedule,
progress, pause / resume / cancel, statistics, and the roles on every action."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from service import db
from service.campaigns.lifecycle import transition
from service.db import utcnow
from service.models import AuditRecord, Batch, Campaign, CampaignKind, Subscriber
from tests import factories
from tests.campaigns.api_calls import to
from tests.factories import event_stat, link_stat, subscribers

from .signin import Staff

FORM: dict[str, Any] = {
    "name": "Rally", "kind": "alert", "subject": "Rally {{ first_name }}",
    "preheader": "Tomorrow at noon", "format": "markdown", "source_code": "nov26",
    "body": "# Rally\n\nHi {{ first_name }} from {{ state }}. [RSVP](https://act.example.org/rsvp)",
    "es_subject": "Manifestación {{ first_name }}", "es_body": "Hola {{ first_name }}, ¡ven!",
    "lists": ["newsletter"], "states": "", "postal_prefixes": "", "locales": [],
}


def create(author: Staff, **changes: Any) -> Campaign:
    response = author.post("/admin/campaigns/new", {**FORM, **changes})
    assert response.status_code == 302, response.text
    return load(int(response.location.rstrip("/").rsplit("/", 1)[1]))


def load(campaign_id: int) -> Campaign:
    """The campaign as committed (each request ends the thread's session: read afresh)."""
    db.session().rollback()
    campaign = db.session().get(Campaign, campaign_id)
    assert campaign is not None
    return campaign


def status_of(campaign_id: int) -> str:
    return load(campaign_id).status.value


def test_editor_writes_a_draft_through_the_apis_own_validation(
    staff: Callable[[str], Staff],
) -> None:
    editor = staff("editor")
    assert editor.get("/admin/campaigns/new").status_code == 200
    campaign = create(editor, states="ca, ny", postal_prefixes="941 100", locales=["es"])
    assert campaign.status.value == "draft" and campaign.kind.value == "alert"
    assert [ml.slug for ml in campaign.lists] == ["newsletter"]
    assert campaign.segment == {"states": ["CA", "NY"], "postal_prefixes": ["941", "100"],
                                "locales": ["es"]}
    assert campaign.variants == {"es": {"subject": "Manifestación {{ first_name }}",
                                        "body": "Hola {{ first_name }}, ¡ven!"}}
    assert campaign.created_by == f"staff:{editor.email}"
    page = editor.get(f"/admin/campaigns/{campaign.id}/edit").text
    assert "Manifestación {{ first_name }}" in page and 'value="ca, ny"' not in page
    assert 'value="CA, NY"' in page

    edited = editor.post(f"/admin/campaigns/{campaign.id}/edit",
                         {**FORM, "name": "Rally (v2)", "es_subject": "", "es_body": "",
                          "lists": ["newsletter", "action-alerts"]})
    assert edited.status_code == 302
    campaign = load(campaign.id)
    assert campaign.name == "Rally (v2)" and campaign.variants == {}
    assert sorted(ml.slug for ml in campaign.lists) == ["action-alerts", "newsletter"]
    actions = db.session().scalars(
        select(AuditRecord.action).where(AuditRecord.object_type == "campaign")).all()
    assert actions == ["campaign.create", "campaign.edit"]

    # The API's schema refuses what the API refuses; the form comes back with the messages.
    bad = editor.post("/admin/campaigns/new", {
        **FORM, "name": "Broken", "states": "California", "lists": [], "es_subject": "Hola",
        "es_body": ""})
    assert bad.status_code == 422
    assert 'id="error-lists"' in bad.text and 'id="error-states"' in bad.text
    assert 'id="error-es_body"' in bad.text
    template = editor.post("/admin/campaigns/new", {**FORM, "body": "Hi {{ first_name "})
    assert template.status_code == 422
    assert 'id="error-body">Template error' in template.text
    assert "Hi {{ first_name " in template.text  # what was typed is kept
    unknown = editor.post("/admin/campaigns/new", {**FORM, "lists": ["no-such-list"]})
    assert unknown.status_code == 422 and "Unknown list: no-such-list" in unknown.text
    assert db.session().scalars(select(Campaign.name)).all() == ["Rally (v2)"]


def test_live_preview_renders_each_language_with_the_real_renderer(
    staff: Callable[[str], Staff],
) -> None:
    editor = staff("editor")
    es = editor.post("/admin/campaigns/preview?lang=es", FORM)
    assert es.status_code == 200
    data = es.get_json()
    assert data["subject"] == "Manifestación Ana" and data["translated"] is True
    assert "Hola Ana, ¡ven!" in data["html"] and "Darse de baja" in data["html"]
    assert "1 Main St, Springfield" in data["html"]
    assert "Tomorrow at noon" in data["html"]  # the preheader
    en = editor.post("/admin/campaigns/preview?lang=en", FORM).get_json()
    assert en["subject"] == "Rally Ana"
    assert "Hi Ana from CA." in en["html"] and "Unsubscribe" in en["html"]
    assert "https://act.example.org/rsvp?source=nov26" in en["html"]
    assert "-@" not in en["html"] + en["text"] + data["html"]
    untranslated = editor.post("/admin/campaigns/preview?lang=es",
                               {**FORM, "es_subject": "", "es_body": ""}).get_json()
    assert untranslated["translated"] is False and untranslated["subject"] == "Rally Ana"
    assert "Darse de baja" in untranslated["html"]
    broken = editor.post("/admin/campaigns/preview?lang=en", {**FORM, "body": "{% if %}"})
    assert broken.status_code == 422 and "Template error" in broken.get_json()["errors"]["body"]
    # The sandbox: attribute tricks render as nothing.
    inert = editor.post("/admin/campaigns/preview?lang=en",
                        {**FORM, "body": "A{{ ''.__class__ }}B{{ config }}C"}).get_json()
    assert "ABC" in inert["text"] and "test-secret-key-used-only-by-the-test-suite" not in inert["html"]
    unsafe = editor.post("/admin/campaigns/preview?lang=en",
                         {**FORM, "body": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    assert unsafe.status_code == 422 and "unsafe" in unsafe.get_json()["errors"]["body"]
    assert editor.post("/admin/campaigns/preview?lang=fr", FORM).status_code == 404


def test_live_audience_count_follows_lists_and_segment(staff: Callable[[str], Staff]) -> None:
    subscribers(6, state="CA", locale_es_every=3)  # person0..5, Spanish: 0 and 3
    subscribers(4, prefix="ny", state="NY")
    subscribers(3, prefix="alerts", list_slug="action-alerts", state="CA")
    editor = staff("editor")

    def count(**changes: Any) -> Any:
        response = editor.post("/admin/campaigns/audience", {**FORM, **changes})
        return response.get_json()["count"] if response.status_code == 200 else response.status_code

    assert count() == 10
    assert count(lists=["newsletter", "action-alerts"]) == 13
    assert count(states="ca") == 6
    assert count(states="CA NY", locales=["es"]) == 2
    assert count(postal_prefixes="90003") == 2  # person3 and ny3
    assert count(lists=[]) == 0
    assert count(lists=["nope"]) == 422
    assert count(states="California") == 422


def test_test_send_then_send_now_with_progress_and_statistics(
    app: Flask, staff: Callable[[str], Staff], run_jobs: Callable[[], None], sink: Any,
) -> None:
    subscribers(12, locale_es_every=4)
    campaigner = staff("campaigner")
    campaign = create(campaigner)
    detail = campaigner.get(f"/admin/campaigns/{campaign.id}")
    assert detail.status_code == 200
    assert 'id="send-now"' in detail.text and 'id="audience">12<' in detail.text

    bad = campaigner.post(f"/admin/campaigns/{campaign.id}/test", {"emails": "not-an-address"})
    assert bad.status_code == 422 and "Not a valid email address" in bad.text
    queued = campaigner.post(f"/admin/campaigns/{campaign.id}/test",
                             {"emails": "me@example.org, person0@example.com"})
    assert queued.status_code == 302
    run_jobs()
    tests = {to(m): m["subject"] for m in sink.messages()}
    # An address of a Spanish subscriber gets their variant, with their own name.
    assert tests == {"me@example.org": "[TEST] Rally Test",
                     "person0@example.com": "[TEST] Manifestación First0"}
    assert {str(m["custom_args"]) for m in sink.messages()} == {
        str({"test_of_campaign": str(campaign.id)})}  # not counted in the statistics
    assert status_of(campaign.id) == "draft"
    sink.clear()

    sent = campaigner.post(f"/admin/campaigns/{campaign.id}/send", {"mode": "now"})
    assert sent.status_code == 302
    run_jobs()
    assert status_of(campaign.id) == "sent"
    assert len(sink.messages()) == 12
    progress = campaigner.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["status"] == "sent" and progress["percent"] == 100.0
    assert (progress["sent"], progress["total"], progress["queued"]) == (12, 12, 0)
    assert progress["eta_seconds"] == 0 and progress["rate_per_minute"] > 0
    assert progress["poll_ms"] == 1000
    # The rate counts only batches finished in the last 30 seconds.
    db.session().execute(update(Batch).values(finished_at=utcnow() - timedelta(seconds=31)))
    db.session().commit()
    later = campaigner.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert later["rate_per_minute"] == 0 and later["percent"] == 100.0
    page = campaigner.get(f"/admin/campaigns/{campaign.id}").text
    assert 'aria-valuenow="100"' in page and 'id="send-now"' not in page
    listing = campaigner.get("/admin/campaigns").text
    assert "Rally" in listing and '<span class="badge sent">sent</span>' in listing
    again = campaigner.post(f"/admin/campaigns/{campaign.id}/send", {"mode": "now"})
    assert again.status_code == 409 and "Cannot schedule a campaign that is sent" in again.text

    # Statistics come from the webhook aggregates.
    hour = datetime(2026, 11, 25, 10, tzinfo=UTC)
    event_stat(campaign.id, hour, "delivered", 12, commit=False)
    event_stat(campaign.id, hour + timedelta(hours=3), "delivered", 1, commit=False)
    event_stat(campaign.id, hour, "open", 7, commit=False)
    link_stat(campaign.id, "https://act.example.org/rsvp?source=nov26", 4)
    stats = campaigner.get(f"/admin/campaigns/{campaign.id}/stats")
    assert stats.status_code == 200
    assert 'id="fig-delivered">13<' in stats.text
    assert "https://act.example.org/rsvp?source=nov26" in stats.text
    # 10:00 … 13:00 with the gaps as zero, the axis stretched to a day.
    assert stats.text.count('<rect class="bar"') == 24
    assert "2026-11-25 11:00 UTC: 0" in stats.text and "2026-11-26 09:00 UTC: 0" in stats.text
    assert "2026-11-25 10:00 UTC: 12" in stats.text
    opens = campaigner.get(f"/admin/campaigns/{campaign.id}/stats?figure=opens").text
    assert "2026-11-25 10:00 UTC: 7" in opens


def test_the_statistics_page_title_is_the_campaign_name_only(
    staff: Callable[[str], Staff],
) -> None:
    """The breakdown tables belong to the page body, not to its <title>."""
    viewer = staff("viewer")
    campaign = factories.campaign(name="Rally")
    page = viewer.get(f"/admin/campaigns/{campaign.id}/stats").text
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith("Statistics · Rally · ") and "<" not in title
    assert page.count('id="by-locale"') == 1 and page.count('id="by-state"') == 1


def test_schedule_pause_resume_cancel_through_the_state_machine(
    staff: Callable[[str], Staff],
) -> None:
    subscribers(3)
    campaigner = staff("campaigner")
    campaign = create(campaigner)
    path = f"/admin/campaigns/{campaign.id}"
    missing = campaigner.post(f"{path}/send", {"mode": "schedule", "send_at": ""})
    assert missing.status_code == 422 and status_of(campaign.id) == "draft"
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    scheduled = campaigner.post(f"{path}/send", {"mode": "schedule",
                                                 "send_at": when.strftime("%Y-%m-%dT%H:%M")})
    assert scheduled.status_code == 302
    campaign = load(campaign.id)
    assert campaign.status.value == "scheduled" and campaign.send_at == when
    assert campaigner.post(f"{path}/resume").status_code == 409

    # A worker starts it (the same state change the start job makes).
    transition(db.session(), campaign.id, "start", "worker")
    db.session().commit()
    page = campaigner.get(path).text
    assert 'id="pause"' in page and 'data-live="yes"' in page
    assert campaigner.post(f"{path}/pause").status_code == 302
    assert status_of(campaign.id) == "paused"
    refused = campaigner.post(f"{path}/pause")
    assert refused.status_code == 409 and "Cannot pause a campaign that is paused" in refused.text
    assert 'id="resume"' in campaigner.get(path).text
    assert campaigner.post(f"{path}/resume").status_code == 302
    assert status_of(campaign.id) == "sending"
    assert campaigner.post(f"{path}/cancel").status_code == 302
    assert status_of(campaign.id) == "cancelled"
    assert campaigner.post(f"{path}/resume").status_code == 409
    assert campaigner.get(f"{path}/edit").status_code == 409
    actions = db.session().scalars(
        select(AuditRecord.action).where(AuditRecord.object_type == "campaign")
        .order_by(AuditRecord.id)).all()
    assert actions == ["campaign.create", "campaign.schedule", "campaign.start",
                       "campaign.pause", "campaign.resume", "campaign.cancel"]


def test_roles_hide_buttons_and_refuse_forged_posts(
    staff: Callable[[str], Staff], run_jobs: Callable[[], None], sink: Any,
) -> None:
    subscribers(2)
    campaign = create(staff("editor"))
    path = f"/admin/campaigns/{campaign.id}"
    viewer = staff("viewer")
    for url in ("/admin/campaigns", path, f"{path}/stats", f"{path}/progress",
                f"{path}/mail/en", f"{path}/mail/es"):
        assert viewer.get(url).status_code == 200, url
    page = viewer.get(path).text
    for button in ('id="send-now"', 'id="test-send"', 'id="cancel"', "Edit draft"):
        assert button not in page
    assert "New campaign" not in viewer.get("/admin/campaigns").text
    assert viewer.get("/admin/campaigns/new").status_code == 403
    assert viewer.get(f"{path}/edit").status_code == 403
    for action in ("send", "test", "pause", "resume", "cancel", "edit"):
        forged = viewer.post(f"{path}/{action}", {**FORM, "mode": "now",
                                                  "emails": "me@example.org"})
        assert forged.status_code == 403, action
    assert viewer.post("/admin/campaigns/new", FORM).status_code == 403
    assert viewer.post("/admin/campaigns/preview?lang=en", FORM).status_code == 403
    assert viewer.post("/admin/campaigns/audience", FORM).status_code == 403

    editor = staff("editor")
    page = editor.get(path).text
    assert "Edit draft" in page and 'id="send-now"' not in page
    assert editor.post(f"{path}/send", {"mode": "now"}).status_code == 403
    assert editor.post(f"{path}/test", {"emails": "me@example.org"}).status_code == 403
    run_jobs()
    assert status_of(campaign.id) == "draft" and sink.messages() == []

    # A campaigner's POST without the CSRF token is refused too.
    campaigner = staff("campaigner")
    assert 'id="send-now"' in campaigner.get(path).text
    no_token = campaigner.client.post(f"{path}/send", data={"mode": "now"})
    assert no_token.status_code == 400 and status_of(campaign.id) == "draft"


def test_mail_frame_is_sandboxed_and_hostile_names_are_text(
    staff: Callable[[str], Staff],
) -> None:
    editor = staff("editor")
    campaign = create(editor, name="<script>alert(1)</script>",
                      body="<b>bold</b><script>alert(2)</script>", format="html")
    mail = editor.get(f"/admin/campaigns/{campaign.id}/mail/en")
    assert mail.headers["Content-Security-Policy"] == "sandbox"
    assert "<b>bold</b>" in mail.text
    for url in ("/admin/campaigns", f"/admin/campaigns/{campaign.id}"):
        page = editor.get(url).text
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_campaign_list_pages_by_keyset(staff: Callable[[str], Staff]) -> None:
    for i in range(52):
        factories.campaign(f"c{i:02d}", kind=CampaignKind.newsletter, subject="s", body="b",
                           commit=False)
    db.session().commit()
    viewer = staff("viewer")
    first = viewer.get("/admin/campaigns").text
    assert first.count('<span class="badge draft">') == 50
    assert ">c51<" in first and ">c02<" in first and ">c01<" not in first
    older = viewer.get("/admin/campaigns?before=3").text
    assert older.count('<span class="badge draft">') == 2 and ">c00<" in older
    assert "/admin/campaigns?before=3" in first


def test_local_hour_send_shows_the_schedule_and_refuses_bad_hours(
    staff: Callable[[str], Staff], run_jobs: Callable[[], None],
) -> None:
    ids = subscribers(3)
    db.session().execute(update(Subscriber).where(Subscriber.id.in_(ids[:2]))
                         .values(timezone="Pacific/Honolulu"))
    db.session().commit()
    campaigner = staff("campaigner")
    campaign = create(campaigner, max_per_minute="250")
    assert load(campaign.id).max_per_minute == 250
    path = f"/admin/campaigns/{campaign.id}"
    page = campaigner.get(path).text
    assert "250 per minute" in page and 'id="schedule-local"' in page
    for bad in ("", "tomorrow", "2027-02-30T09:00", "2027-07-14T09:00\u202e", "2001-01-01T09:00"):
        refused = campaigner.post(f"{path}/send", {"mode": "local", "send_at_local": bad})
        assert refused.status_code == 422 and 'id="send-at-local-error"' in refused.text, bad
        assert status_of(campaign.id) == "draft"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    sent = campaigner.post(f"{path}/send", {"mode": "local",
                                            "send_at_local": f"{tomorrow}T09:00:00"})
    assert sent.status_code == 302
    assert load(campaign.id).send_at_local == f"{tomorrow}T09:00"
    run_jobs()
    page = campaigner.get(path).text
    assert 'id="schedule-card"' in page and f"{tomorrow} 09:00 in each recipient" in page
    assert f"{tomorrow} 19:00</td><td>2<" in page  # Honolulu: UTC-10
    assert "</td><td>1<" in page  # the unknown zone: New York's 09:00
    spanish = campaigner.get(f"{path}?lang=es").text
    assert "Calendario de entrega" in spanish and "en la zona horaria de cada destinatario" in spanish


def test_max_per_minute_in_the_editor_refuses_nonsense(staff: Callable[[str], Staff]) -> None:
    editor = staff("editor")
    for bad in ("0", "-5", "100001", "ten", "1e3", "\u0661\u0662"):
        refused = editor.post("/admin/campaigns/new", {**FORM, "max_per_minute": bad})
        assert refused.status_code == 422, bad
    assert create(editor, max_per_minute="").max_per_minute is None
