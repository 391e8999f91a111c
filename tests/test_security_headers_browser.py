"""The pages under their Content-Security-Policy in Debian Chromium: every script of the
admin and the public pages still runs (the browser reports no refusal), the mail
previews still render, and axe-core finds no accessibility violation."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from service import db
from service.models import Role, SubscriptionStatus
from tests.admin.signin import log_in_page
from tests.browser import BROWSER_MODULE, assert_accessible, chromium
from tests.factories import campaign, subscriber, user
from tests.support import serving

PORT = 18533
BASE = f"http://127.0.0.1:{PORT}"

pytestmark = BROWSER_MODULE


@pytest.fixture
def live(make_app: Callable[..., Flask]) -> Iterator[int]:
    app = make_app(public_url=BASE)
    with app.app_context():
        user("admin@example.org", Role.admin)
        subscriber("ana@example.org", first_name="Ana",
                   lists={"newsletter": SubscriptionStatus.confirmed})
        draft = campaign("Rally", subject="Come to the rally", body="# Rally\n\nMonday.",
                         lists=["newsletter"])
        draft_id = draft.id
        db.database().scoped.remove()
    with serving(app, PORT):
        yield draft_id


def test_pages_work_under_their_policy(live: int) -> None:
    from playwright.sync_api import expect

    refusals: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: refusals.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: refusals.append(str(e)))

        for path in ("/subscribe?lists=newsletter", "/preferences"):
            page.goto(BASE + path)
            assert_accessible(page, path)
        page.goto(f"{BASE}/admin/login")
        log_in_page(page, "admin@example.org")
        expect(page.locator("h1")).to_be_visible()
        for path in ("/admin/", "/admin/imports", "/admin/lists/embed?lists=newsletter",
                     f"/admin/campaigns/{live}"):
            page.goto(BASE + path)
            assert_accessible(page, path)
        # The campaign page's mail preview frame renders the mail, styles included.
        mail = page.frame_locator("#mail")
        expect(mail.locator("h1")).to_have_text("Rally")
        # The editor's script draws the live preview as the body is typed.
        page.goto(f"{BASE}/admin/campaigns/{live}/edit")
        page.fill("#body", "# Changed\n\nTuesday.")
        expect(page.frame_locator("#preview").locator("h1")).to_have_text("Changed")
        assert_accessible(page, "campaign editor")
    assert refusals == []
