"""The list form's welcome mail: saved through the same rules as the API, previewed, and
sent as a test to the signed-in staff member's own address."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select

from service import db
from service.models import AuditRecord, MailingList
from tests import factories

from .signin import Staff

FORM = {"name_en": "Newsletter", "name_es": "Boletín", "public": "on",
        "welcome_en_subject": "Welcome {{ first_name }}",
        "welcome_en_body": "Thanks for joining, **{{ first_name }}**.",
        "welcome_es_subject": "", "welcome_es_body": ""}


def newsletter() -> MailingList:
    session = db.session()
    session.expire_all()
    return session.scalars(select(MailingList).where(MailingList.slug == "newsletter")).one()


def test_welcome_is_saved_previewed_and_tested(staff: Callable[[str], Staff], client: FlaskClient,
                                               run_jobs, sink) -> None:
    admin = staff("admin")
    list_id = factories.list_id("newsletter")
    preview = admin.post(f"/admin/lists/{list_id}/edit", {**FORM, "action": "preview"})
    assert preview.status_code == 200 and "Thanks for joining, &lt;strong&gt;Ana" in preview.text
    assert newsletter().welcome == {}  # a preview saves nothing
    saved = admin.post(f"/admin/lists/{list_id}/edit", {**FORM, "action": "save"})
    assert saved.status_code == 302
    assert newsletter().welcome == {"en": {"subject": "Welcome {{ first_name }}",
                                           "body": "Thanks for joining, **{{ first_name }}**."}}

    sent = admin.post(f"/admin/lists/{list_id}/edit", {"action": "test", "test_lang": "es"})
    assert sent.status_code == 302
    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == admin.email
    assert mail["subject"] == "[TEST] Welcome Test"  # no Spanish welcome: English
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert db.session().scalar(select(func.count()).select_from(AuditRecord).where(
        AuditRecord.action == "list.welcome_test")) == 1

    # Removing a language: its fields left empty.
    cleared = admin.post(f"/admin/lists/{list_id}/edit", {
        **FORM, "welcome_en_subject": "", "welcome_en_body": "", "action": "save"})
    assert cleared.status_code == 302 and newsletter().welcome == {}


def test_hostile_welcome_in_the_form_is_refused(staff: Callable[[str], Staff]) -> None:
    admin = staff("admin")
    list_id = factories.list_id("newsletter")
    for change, field in [
        ({"welcome_en_body": "{{ 1/0 }}"}, "welcome_en_body"),
        ({"welcome_en_subject": "Two\nlines"}, "welcome_en_subject"),
        ({"welcome_en_body": "Hidden \u202e text"}, "welcome_en_body"),
        ({"welcome_es_subject": "Only a subject"}, "welcome_es_body"),
        ({"welcome_en_body": "x" * 100_001}, "welcome_en_body"),
    ]:
        response = admin.post(f"/admin/lists/{list_id}/edit",
                              {**FORM, **change, "action": "save"})
        assert response.status_code == 422, (field, response.status_code)
        assert 'class="error"' in response.text
        assert newsletter().welcome == {}, field
    # Only admins reach the form.
    editor = staff("editor")
    assert editor.post(f"/admin/lists/{list_id}/edit", FORM).status_code == 403
