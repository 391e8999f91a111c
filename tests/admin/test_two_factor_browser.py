"""Two-factor enrolment in Debian Chromium: required for staff, scan (read the key), confirm,
save the recovery codes, then sign in with a code; axe-core finds no violation on the pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest
from flask import Flask

from service import db
from service.models import Role
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import PASSWORD, user
from tests.support import serving

from .signin import log_in_page

PORT = 18549

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[str]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}", staff_require_2fa=True)
    with app.app_context():
        user("admin@example.org", Role.admin)
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}"


def test_enrolment_and_sign_in_with_a_code(live_app: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_app}/admin/login")
        expect(page.locator("#code")).to_be_visible()
        assert_accessible(page, "login")
        log_in_page(page, "admin@example.org")

        # Two-factor is required: the admin sends us to enrolment and nowhere else.
        expect(page).to_have_url(f"{live_app}/admin/2fa")
        expect(page.locator(".flash")).to_contain_text("required for all staff")
        assert_accessible(page, "2fa status")
        page.goto(f"{live_app}/admin/subscribers")
        expect(page).to_have_url(f"{live_app}/admin/2fa")

        page.get_by_role("button", name="Set up two-factor authentication").click()
        qr = page.locator("figure.qr svg")
        expect(qr).to_be_visible()
        box = qr.bounding_box()
        assert box is not None and box["width"] > 150  # large enough to scan from a screen
        page.screenshot(path=str(ARTIFACTS / "admin-2fa-enrol.png"), full_page=True)
        assert_accessible(page, "enrolment")
        secret = page.locator("#totp-key").inner_text().strip()
        totp = pyotp.TOTP(secret)

        page.fill("#code", "000000" if totp.now() != "000000" else "111111")
        page.click("text=Turn on two-factor authentication")
        expect(page.locator("#code-error")).to_contain_text("not right")
        assert_accessible(page, "enrolment, wrong code")

        page.fill("#code", totp.now())
        page.click("text=Turn on two-factor authentication")
        codes = page.locator("#recovery-codes li")
        expect(codes).to_have_count(10)
        page.screenshot(path=str(ARTIFACTS / "admin-2fa-codes.png"), full_page=True)
        assert_accessible(page, "recovery codes")
        recovery = codes.nth(0).inner_text().strip()

        page.click("text=Continue to the admin")
        expect(page).to_have_url(f"{live_app}/admin/")
        page.click("text=Log out")

        # Signing in now needs a code: without one, the form says so; a recovery code works.
        page.goto(f"{live_app}/admin/login")
        log_in_page(page, "admin@example.org")
        expect(page.locator("p.error")).to_contain_text("6-digit code")
        assert_accessible(page, "login, code missing")
        page.fill("#email", "admin@example.org")
        page.fill("#password", PASSWORD)
        page.fill("#code", recovery)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{live_app}/admin/")
        page.click("nav >> text=Subscribers")
        expect(page).to_have_url(f"{live_app}/admin/subscribers")
