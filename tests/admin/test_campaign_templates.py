"""The admin's previews of templates that fail or exhaust their budget: 422 with the
message, never a server error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.campaigns import render
from tests import factories
from tests.campaigns.test_template_limits import RESOURCE_BOMBS, RUNTIME_ERRORS

from .signin import Staff
from .test_campaigns import FORM


@pytest.fixture(autouse=True)
def _short_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RENDER_SECONDS", 1.0)


@pytest.mark.parametrize(("body", "message"),
                         [RUNTIME_ERRORS[0], RUNTIME_ERRORS[2], RESOURCE_BOMBS[0],
                          RESOURCE_BOMBS[2]])
def test_previews_and_the_editor_answer_422_with_the_message(
    staff: Callable[[str], Staff], body: str, message: str,
) -> None:
    editor = staff("editor")
    live = editor.post("/admin/campaigns/preview?lang=en", {**FORM, "body": body})
    assert live.status_code == 422 and message in live.get_json()["errors"]["body"]
    spanish = editor.post("/admin/campaigns/preview?lang=es", {**FORM, "es_body": body})
    assert spanish.status_code == 422 and message in spanish.get_json()["errors"]["es_body"]
    saved = editor.post("/admin/campaigns/new", {**FORM, "body": body})
    assert saved.status_code == 422 and message in saved.text
    # A stored campaign whose template cannot render (saved before these limits existed):
    # its preview frame answers 422 with the message, and a test send is refused.
    stored = factories.campaign("Old", body=body, lists=["newsletter"])
    frame = editor.get(f"/admin/campaigns/{stored.id}/mail/en")
    assert frame.status_code == 422 and message in frame.text
    test = staff("campaigner").post(f"/admin/campaigns/{stored.id}/test",
                                    {"emails": "me@example.org"})
    assert test.status_code == 422 and message in test.text


def test_live_preview_renders_before_every_field_is_set(staff: Callable[[str], Staff]) -> None:
    editor = staff("editor")
    typing = {"name": "", "kind": "alert", "subject": "", "body": "Hi {{ first_name }}",
              "format": "markdown", "lists": [], "states": "California", "locales": []}
    shown = editor.post("/admin/campaigns/preview?lang=en", typing)
    assert shown.status_code == 200, shown.text
    assert "Hi Ana" in shown.get_json()["html"] and shown.get_json()["subject"] == ""
    # Only the body so far (no kind, no format): the defaults render it.
    bare = editor.post("/admin/campaigns/preview?lang=en", {"body": "**Bold** {{ state }}"})
    assert bare.status_code == 200 and "<strong>Bold</strong> CA" in bare.get_json()["html"]
    # A wrong value elsewhere does not stop the preview; a broken template does.
    odd = editor.post("/admin/campaigns/preview?lang=en", {**typing, "kind": "poster"})
    assert odd.status_code == 200 and "Hi Ana" in odd.get_json()["html"]
    broken = editor.post("/admin/campaigns/preview?lang=en", {**typing, "kind": "poster",
                                                               "subject": "{{ oops"})
    assert broken.status_code == 422 and "Template error" in broken.get_json()["errors"]["subject"]


def test_the_schedule_form_refuses_a_date_more_than_a_year_ahead(
    staff: Callable[[str], Staff],
) -> None:
    campaigner = staff("campaigner")
    stored = factories.campaign("Far", lists=["newsletter"])
    answer = campaigner.post(f"/admin/campaigns/{stored.id}/send",
                             {"mode": "schedule", "send_at": "9999-12-31T23:59"})
    assert answer.status_code == 422 and "365 days" in answer.text
    garbled = campaigner.post(f"/admin/campaigns/{stored.id}/send",
                              {"mode": "schedule", "send_at": "soon"})
    assert garbled.status_code == 422 and "Give a date and time." in garbled.text
