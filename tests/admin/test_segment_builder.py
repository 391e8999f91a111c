"""The campaign editor's segment builder: every filter as form fields, the live count,
errors shown at the field group, saving / loading / updating a saved segment, following a
saved segment (in Chromium: test_segment_builder_browser.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from service import db
from service.models import Campaign, CampaignKind, CampaignStatus, SavedSegment, SubscriberTag
from tests.factories import subscribers

from .signin import Staff
from .test_campaigns import FORM, create


def sent_campaign(name: str) -> int:
    session = db.session()
    c = Campaign(name=name, kind=CampaignKind.newsletter, subject="s", body="b",
                 status=CampaignStatus.sent, started_at=db.utcnow())
    session.add(c)
    session.commit()
    return c.id


def test_every_filter_goes_from_the_form_into_the_segment(staff: Callable[[str], Staff]) -> None:
    earlier = sent_campaign("Earlier")
    editor = staff("editor")
    page = editor.get("/admin/campaigns/new").text
    for field in ("states", "counties", "postal_prefixes", "attr_key_0", "attr_values_0",
                  "attr_none_0", "tags_any", "tags_none", "opened_campaigns", "not_opened_days",
                  "clicked_campaigns", "not_clicked_days", "received_campaigns",
                  "not_received_days", "joined_after", "joined_before", "segment_id"):
        assert f'id="{field}"' in page, field
    assert "Earlier (#" in page
    campaign = create(editor, states="ny", counties="Kings County, NY; Queens County, NY",
                      postal_prefixes="112", locales=["es"], attr_key_0="cd",
                      attr_values_0="NY-10, NY-12", attr_key_1="team", attr_none_1="1",
                      attr_key_2="", tags_any="volunteer, donor", tags_none="press",
                      not_opened_campaigns=[str(earlier)], clicked_days="30",
                      joined_after="2025-01-01", joined_before="2026-01-01")
    assert campaign.segment == {
        "states": ["NY"], "postal_prefixes": ["112"], "locales": ["es"],
        "counties": ["Kings County, NY", "Queens County, NY"],
        "attributes": {"cd": ["NY-10", "NY-12"], "team": None},
        "tags_any": ["volunteer", "donor"], "tags_none": ["press"],
        "not_opened": {"campaigns": [earlier]}, "clicked": {"within_days": 30},
        "joined_after": "2025-01-01", "joined_before": "2026-01-01"}
    page = editor.get(f"/admin/campaigns/{campaign.id}/edit").text
    assert 'value="Kings County, NY; Queens County, NY"' in page
    assert 'value="NY-10, NY-12"' in page and 'value="volunteer, donor"' in page


@pytest.mark.parametrize(("changes", "field"), [
    ({"counties": "Kings County"}, "counties"),
    ({"attr_key_0": "cd", "attr_values_0": "NY\u202e10"}, "attributes"),
    ({"attr_key_0": "c\x01d", "attr_values_0": "x"}, "attributes"),
    ({"opened_days": "0"}, "opened"),
    ({"opened_days": "ten"}, "opened"),
    ({"opened_campaigns": ["999999"]}, "opened"),
    ({"clicked_campaigns": ["1"], "clicked_days": "3"}, "clicked"),
    ({"joined_after": "2025-13-01"}, "joined_after"),
    ({"tags_any": "t" * 65}, "tags_any"),
    ({"segment_id": "999999"}, "segment_id"),
])
def test_bad_filters_are_shown_at_their_group(
    staff: Callable[[str], Staff], changes: dict[str, Any], field: str,
) -> None:
    editor = staff("editor")
    answer = editor.post("/admin/campaigns/new", {**FORM, **changes})
    assert answer.status_code == 422, answer.text
    assert f'id="error-{field}"' in answer.text
    count = editor.post("/admin/campaigns/audience", {**FORM, **changes})
    assert count.status_code == 422 and field in count.get_json()["errors"], count.text
    db.session().rollback()
    assert db.session().scalar(select(Campaign.id)) is None


def test_live_count_saves_loads_and_updates_a_segment(staff: Callable[[str], Staff]) -> None:
    volunteers = subscribers(3, state="NY", prefix="vol")
    subscribers(4, state="NY")
    session = db.session()
    session.add_all(SubscriberTag(subscriber_id=i, tag="volunteer") for i in volunteers)
    session.commit()
    campaigner, editor, viewer = staff("campaigner"), staff("editor"), staff("viewer")

    def count(author: Staff, **changes: Any) -> Any:
        answer = author.post("/admin/campaigns/audience", {**FORM, **changes})
        return answer.get_json()["count"] if answer.status_code == 200 else answer.status_code

    assert count(editor) == 7
    assert count(editor, tags_any="volunteer") == 3
    assert count(editor, tags_none="volunteer", states="NY") == 4

    assert editor.post("/admin/segments", {**FORM, "tags_any": "volunteer",
                                           "segment_name": "Volunteers"}).status_code == 403
    hostile = campaigner.post("/admin/segments", {**FORM, "segment_name": "Vol\x00"})
    assert hostile.status_code == 422 and "segment_name" in hostile.get_json()["errors"]
    saved = campaigner.post("/admin/segments", {**FORM, "tags_any": "volunteer",
                                                "segment_name": "Volunteers"})
    assert saved.status_code == 200, saved.text
    sid = saved.get_json()["id"]
    loaded = viewer.get(f"/admin/segments/{sid}").get_json()
    assert loaded["segment"] == {"tags_any": ["volunteer"]}
    assert loaded["values"]["tags_any"] == "volunteer"
    updated = campaigner.post(f"/admin/segments/{sid}", {**FORM, "tags_none": "volunteer",
                                                         "segment_name": ""})
    assert updated.status_code == 200 and updated.get_json()["name"] == "Volunteers"
    assert updated.get_json()["segment"] == {"tags_none": ["volunteer"]}
    # following it: the live count and the draft use the saved segment
    assert count(editor, segment_id=str(sid), tags_any="volunteer") == 4
    campaign = create(editor, segment_id=str(sid))
    assert (campaign.segment_id, campaign.segment) == (sid, {})
    page = editor.get(f"/admin/campaigns/{campaign.id}/edit").text
    assert f'<option value="{sid}" selected>Volunteers</option>' in page
    assert db.session().get(SavedSegment, sid) is not None
