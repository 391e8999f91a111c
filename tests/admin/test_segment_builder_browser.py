"""The segment builder in Chromium: the live count follows the filters, a saved segment
loads into them, is updated and saved under a new name; axe-core finds no violation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from service import db
from service.models import Role, SavedSegment, SubscriberTag
from tests.browser import BROWSER_MODULE, assert_accessible, chromium
from tests.factories import subscribers, user
from tests.support import serving

from .signin import log_in_page
from .test_segment_builder import sent_campaign

PORT = 18537

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_editor(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[str]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("campaigner@example.org", Role.campaigner)
        ids = subscribers(5, state="NY")
        subscribers(2, state="CA", prefix="ca")
        session = db.session()
        session.add_all(SubscriberTag(subscriber_id=i, tag="volunteer") for i in ids[:2])
        session.add(SavedSegment(name="NY volunteers",
                                 segment={"states": ["NY"], "tags_any": ["volunteer"]}))
        session.commit()
        sent_campaign("Spring appeal")
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}"


def test_segment_builder_in_chromium(live_editor: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{live_editor}/admin/login")
        log_in_page(page, "campaigner@example.org")
        page.goto(f"{live_editor}/admin/campaigns/new")
        page.check("input[name=lists][value=newsletter]")
        expect(page.locator("#audience-count")).to_have_text("7 people")
        assert_accessible(page, "campaign editor with segment builder")
        page.select_option("#load_segment", label="NY volunteers")
        page.click("#load-segment")
        expect(page.locator("#segment-status")).to_contain_text("Loaded")
        expect(page.locator("#states")).to_have_value("NY")
        expect(page.locator("#tags_any")).to_have_value("volunteer")
        expect(page.locator("#audience-count")).to_have_text("2 people")
        page.fill("#tags_any", "")
        page.fill("#tags_none", "volunteer")
        expect(page.locator("#audience-count")).to_have_text("3 people")
        page.click("#update-segment")
        expect(page.locator("#segment-status")).to_contain_text("Saved")
        page.fill("#segment_name", "NY, not volunteers yet")
        page.click("#save-segment")
        expect(page.locator("#segment-status")).to_contain_text("Saved “NY, not volunteers yet”")
        expect(page.locator("#segment_id option")).to_have_count(3)
        assert_accessible(page, "segment builder after saving")
