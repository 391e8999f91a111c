"""Local-hour delivery and the send-rate cap in the admin, in a real browser, checked with
axe-core: the editor's cap field, the local-hour form, and the campaign page's schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import update

from service import db
from service.models import Role, Subscriber
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import subscribers, user
from tests.support import serving

from .signin import log_in_page

PORT = 18547

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[str]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("admin@example.org", Role.admin)
        ids = subscribers(4)
        db.session().execute(update(Subscriber).where(Subscriber.id.in_(ids[:3]))
                             .values(timezone="America/Los_Angeles"))
        db.session().commit()
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}"


def test_local_hour_and_rate_cap_pages_in_chromium(live_app: str) -> None:
    from playwright.sync_api import expect

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_app}/admin/login")
        log_in_page(page, "admin@example.org")
        page.goto(f"{live_app}/admin/campaigns/new")
        page.fill("#name", "Warm-up")
        page.fill("#subject", "Hello {{ first_name }}")
        page.fill("#body", "Hi {{ first_name }}")
        page.check("input[name=lists][value=newsletter]")
        page.fill("#max_per_minute", "600")
        assert_accessible(page, "campaign editor with the send-rate cap")
        page.click("text=Save draft")
        expect(page.locator("#max-per-minute")).to_contain_text("600 per minute")

        page.fill("#send_at_local", f"{tomorrow}T09:00")
        page.click("#schedule-local")
        expect(page.locator("#schedule-card")).to_be_visible(timeout=20_000)
        page.reload()  # the start job has frozen the audience by now (in-process worker)
        expect(page.locator("#schedule tbody tr")).to_have_count(2, timeout=20_000)
        expect(page.locator("#schedule")).to_contain_text(f"{tomorrow} 17:00")  # LA: UTC-8
        page.screenshot(path=str(ARTIFACTS / "admin-local-hour.png"))
        assert_accessible(page, "campaign page with its delivery schedule")

        page.goto(page.url + "?lang=es")
        expect(page.locator("#schedule-card h2")).to_have_text("Calendario de entrega")
        assert_accessible(page, "campaign page in Spanish")
