"""The subject test in the admin (Flask test client, both backends): the editor's fields
through the API's schema, hostile values, the campaign page and "pick this winner"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from service import db
from service.models import AuditRecord
from tests.campaigns.api_calls import to
from tests.factories import subscribers

from .signin import Staff
from .test_campaigns import FORM, create, load

AB_FORM = {"ab_on": "1", "ab_subjects": "Alpha {{ first_name }}\nBeta",
           "ab_subjects_es": "", "ab_sample_percent": "50", "ab_metric": "unique_clicks",
           "ab_wait_minutes": "45"}


def test_the_editor_sets_up_edits_and_removes_a_subject_test(
    staff: Callable[[str], Staff],
) -> None:
    editor = staff("editor")
    page = editor.get("/admin/campaigns/new").text
    assert 'id="ab_subjects"' in page and 'id="ab_on"' in page
    campaign = create(editor, **AB_FORM)
    assert campaign.ab_test == {"subjects": ["Alpha {{ first_name }}", "Beta"],
                                "sample_percent": 50, "metric": "unique_clicks",
                                "wait_minutes": 45}
    page = editor.get(f"/admin/campaigns/{campaign.id}/edit").text
    assert "Alpha {{ first_name }}\nBeta</textarea>" in page and 'value="45"' in page
    detail = editor.get(f"/admin/campaigns/{campaign.id}").text
    assert 'id="ab-card"' in detail and "Beta" in detail and "ab-pick-0" not in detail

    # Per language: the Spanish box pairs with the English one, line by line.
    edited = editor.post(f"/admin/campaigns/{campaign.id}/edit",
                         {**FORM, **AB_FORM, "ab_subjects": "One\nTwo\nThree",
                          "ab_subjects_es": "Uno\nDos\nTres"})
    assert edited.status_code == 302
    assert load(campaign.id).ab_test["subjects"] == [  # type: ignore[index]
        {"en": "One", "es": "Uno"}, {"en": "Two", "es": "Dos"}, {"en": "Three", "es": "Tres"}]
    page = editor.get(f"/admin/campaigns/{campaign.id}/edit").text
    assert "Uno\nDos\nTres</textarea>" in page

    edited = editor.post(f"/admin/campaigns/{campaign.id}/edit", {**FORM})  # box unticked
    assert edited.status_code == 302 and load(campaign.id).ab_test is None


HOSTILE: list[tuple[dict[str, str], str]] = [
    ({"ab_subjects": "only one"}, "error-ab_subjects"),
    ({"ab_subjects": "\n".join("abcdef")}, "error-ab_subjects"),
    ({"ab_subjects": "a\nb\u202ec"}, "error-ab_subjects"),
    ({"ab_subjects": "a\nb\x00"}, "error-ab_subjects"),
    ({"ab_subjects": "a\n" + "x" * 5000}, "error-ab_subjects"),
    ({"ab_subjects": "a\n{{ 1/0 }}"}, "error-ab_subjects"),
    ({"ab_subjects_es": "uno"}, "error-ab_subjects_es"),
    ({"ab_subjects_es": "uno\n{% include 'x' %}"}, "error-ab_subjects_es"),
    ({"ab_sample_percent": "0"}, "error-ab_sample_percent"),
    ({"ab_sample_percent": "51"}, "error-ab_sample_percent"),
    ({"ab_sample_percent": "ten"}, "error-ab_sample_percent"),
    ({"ab_sample_percent": "9" * 400}, "error-ab_sample_percent"),
    ({"ab_sample_percent": "-5"}, "error-ab_sample_percent"),
    ({"ab_metric": "opens<script>"}, "error-ab_metric"),
    ({"ab_wait_minutes": "0"}, "error-ab_wait_minutes"),
    ({"ab_wait_minutes": "1e9"}, "error-ab_wait_minutes"),
]


@pytest.mark.parametrize(("change", "error"), HOSTILE)
def test_hostile_set_ups_come_back_with_the_field_marked_and_nothing_saved(
    staff: Callable[[str], Staff], change: dict[str, str], error: str,
) -> None:
    editor = staff("editor")
    response = editor.post("/admin/campaigns/new", {**FORM, **AB_FORM, **change})
    assert response.status_code == 422, response.text[:500]
    assert f'id="{error}"' in response.text
    assert "<script>" not in response.text.split("<main", 1)[-1].replace(
        "<script nonce", "")  # typed values are escaped
    db.session().rollback()
    assert db.session().scalars(select(AuditRecord.action)).all() == ["user.login"]


def _running_test(staff: Callable[[str], Staff], run_jobs: Callable[..., None]) -> int:
    subscribers(12)
    campaigner = staff("campaigner")
    campaign = create(campaigner, **AB_FORM)
    assert campaigner.post(f"/admin/campaigns/{campaign.id}/send",
                           {"mode": "now"}).status_code == 302
    run_jobs()
    return campaign.id


def test_pick_this_winner_sends_it_to_the_rest(
    staff: Callable[[str], Staff], run_jobs: Callable[..., None], sink: Any,
) -> None:
    cid = _running_test(staff, run_jobs)
    campaigner, editor = staff("campaigner"), staff("editor")
    page = campaigner.get(f"/admin/campaigns/{cid}").text
    assert "ab-pick-0" in page and "ab-pick-1" in page and 'id="ab-countdown"' in page
    assert "ab-pick-0" not in editor.get(f"/admin/campaigns/{cid}").text
    progress = campaigner.get(f"/admin/campaigns/{cid}/progress").get_json()
    assert [v["sent"] for v in progress["ab"]["variants"]] == [3, 3]

    url = f"/admin/campaigns/{cid}/ab/decide"
    assert editor.post(url, {"winner": "1"}).status_code == 403
    no_csrf = campaigner.client.post(url, data={"winner": "1"})
    assert no_csrf.status_code in (400, 403)
    for bad in ["2", "-1", "x", "", "1" * 50, "0x1"]:
        assert campaigner.post(url, {"winner": bad}).status_code == 422, bad
    assert load(cid).ab_status == "testing"
    done = campaigner.post(url, {"winner": "1"})
    assert done.status_code == 302
    run_jobs()
    campaign = load(cid)
    assert campaign.ab_status == "decided" and campaign.ab_winner == 1
    assert campaign.status.value == "sent"
    again = campaigner.post(url, {"winner": "0"})
    assert again.status_code == 409 and "already decided" in again.text
    mails = sink.messages()
    assert Counter(to(m) for m in mails) == Counter(f"person{i}@example.com" for i in range(12))
    assert {m["subject"] for m in mails[6:]} == {"Beta"}
    page = campaigner.get(f"/admin/campaigns/{cid}").text
    assert "Winner" in page and "ab-pick-" not in page


def test_the_subject_test_speaks_spanish(app: Any) -> None:
    """Every string of the subject test's pages has its Spanish translation."""
    import re
    from pathlib import Path

    from flask_babel import force_locale, gettext

    import service

    root = Path(service.__file__).parent / "templates" / "admin"
    sources = (root / "campaign.html").read_text() + (root / "campaign_form.html").read_text()
    strings = set(re.findall(r"_\('([^']+)'", sources))
    assert len(strings) >= 25, strings
    with app.test_request_context(), force_locale("es"):
        untranslated = [s for s in strings if gettext(s) == s]
        assert gettext("Pick this winner") == "Elegir este ganador"
    assert untranslated == []
