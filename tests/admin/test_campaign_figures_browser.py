"""The campaign pages this round adds to, in Chromium with axe-core: the editor's action URL
field, the circuit breaker's banner on a paused campaign, and the statistics page with its
actions and its tables per language and state (0 accessibility violations on each)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask

from service import db
from service.models import CampaignBreakdown, CampaignEventUnique, CampaignStatus, Role
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import campaign, event_stat, link_stat, user
from tests.support import serving

from .signin import log_in_page

PORT = 18531
REASON = ("Paused automatically by the circuit breaker: 100 hard bounces in 1,000 delivered "
          "mails (10.0%, above the limit of 5.0%). Check the list's quality before resuming.")

pytestmark = BROWSER_MODULE


@pytest.fixture
def live(make_app: Callable[..., Flask]) -> Iterator[tuple[str, int, int]]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("campaigner@example.org", Role.campaigner)
        paused = campaign("Petition push", lists=["newsletter"], status=CampaignStatus.paused,
                          commit=False)
        paused.status_reason = REASON
        paused.action_url = "https://act.example.org/petition"
        session = db.session()
        session.commit()
        hour = datetime(2026, 11, 25, 10, tzinfo=UTC)
        event_stat(paused.id, hour, "delivered", 1000)
        event_stat(paused.id, hour, "click", 90)
        link_stat(paused.id, "https://act.example.org/petition", 90)
        for i in range(30):
            session.add(CampaignEventUnique(campaign_id=paused.id, event="action",
                                            recipient=str(i + 1)))
        for dimension, key, delivered, actions in (("locale", "en", 700, 20),
                                                   ("locale", "es", 300, 10),
                                                   ("state", "CA", 600, 25),
                                                   ("state", "", 400, 5)):
            session.add(CampaignBreakdown(campaign_id=paused.id, dimension=dimension, key=key,
                                          delivered=delivered, unique_opens=delivered // 2,
                                          unique_clicks=actions * 2, actions=actions))
        draft = campaign("Draft", lists=["newsletter"])
        session.commit()
        ids = (paused.id, draft.id)
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}", *ids


def test_action_url_breaker_banner_and_breakdowns_in_chromium(live) -> None:
    from playwright.sync_api import expect

    url, paused_id, draft_id = live
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/admin/login")
        log_in_page(page, "campaigner@example.org")

        page.goto(f"{url}/admin/campaigns/{paused_id}")
        expect(page.locator("#paused-reason")).to_contain_text("100 hard bounces in 1,000")
        expect(page.locator("#paused-reason")).to_have_attribute("role", "alert")
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-breaker.png"), full_page=True)
        assert_accessible(page, "paused campaign")

        page.goto(f"{url}/admin/campaigns/{paused_id}/stats")
        expect(page.locator("#fig-actions")).to_have_text("30")
        expect(page.locator("#figures")).to_contain_text("3.0% of delivered")
        expect(page.locator("#by-locale tbody tr")).to_have_count(2)
        expect(page.locator("#by-locale tbody tr").first).to_contain_text("700")
        expect(page.locator("#by-state tbody")).to_contain_text("unknown")
        expect(page.locator("svg.chart rect.bar").first).to_be_attached()
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-breakdowns.png"), full_page=True)
        assert_accessible(page, "statistics")

        page.goto(f"{url}/admin/campaigns/{draft_id}/edit")
        page.fill("#action_url", "javascript:alert(1)")
        page.evaluate("document.querySelector('#campaign-form').noValidate = true")
        page.click("#campaign-form button[type=submit]")
        expect(page.locator("#error-action_url")).to_be_visible()
        assert_accessible(page, "editor with an error")
        page.fill("#action_url", "https://act.example.org/rsvp")
        page.click("#campaign-form button[type=submit]")
        page.goto(f"{url}/admin/campaigns/{draft_id}/edit")
        expect(page.locator("#action_url")).to_have_value("https://act.example.org/rsvp")
        context.close()
