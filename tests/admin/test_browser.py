"""The admin in a real browser: Playwright driving Debian Chromium against a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from service import db
from service.models import Role, Subscriber, SubscriptionStatus
from tests.browser import ARTIFACTS, BROWSER_MODULE, chromium
from tests.factories import subscriber, user
from tests.support import serving

from .signin import log_in_page

PORT = 18511

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[str]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("admin@example.org", Role.admin)
        subscriber("ana.garcia@example.org", first_name="Ana", last_name="García",
                   state="CA", locale="es", lists={"newsletter": SubscriptionStatus.confirmed})
        subscriber("mallory@example.org", first_name="<script>alert(1)</script>",
                   lists={"action-alerts": SubscriptionStatus.pending})
        for i in range(30):
            subscriber(f"member{i}@example.org", first_name=f"Member{i}",
                       lists={"action-alerts": SubscriptionStatus.confirmed})
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}"


def test_staff_workflow_in_chromium(live_app: str) -> None:
    from playwright.sync_api import expect

    dialogs: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app)
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # Logged out: the admin sends us to the login form.
        page.goto(f"{live_app}/admin/subscribers")
        expect(page).to_have_url(f"{live_app}/admin/login?next=%2Fadmin%2Fsubscribers")
        page.screenshot(path=str(ARTIFACTS / "admin-login.png"))
        log_in_page(page, "admin@example.org")
        expect(page).to_have_url(f"{live_app}/admin/subscribers")

        # Search by name prefix, then open the detail page.
        page.fill("#q", "garc")
        page.click("text=Search")
        expect(page.locator("table tbody tr")).to_have_count(1)
        expect(page.locator("table tbody")).to_contain_text("ana.garcia@example.org")
        page.screenshot(path=str(ARTIFACTS / "admin-subscribers.png"), full_page=True)
        page.click("text=ana.garcia@example.org")
        expect(page.locator("h1")).to_contain_text("ana.garcia@example.org")
        expect(page.locator("#postal_code")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "admin-subscriber.png"), full_page=True)

        # A hostile name is shown as text, never run.
        page.goto(f"{live_app}/admin/subscribers?q=mallory")
        expect(page.locator("table tbody")).to_contain_text("<script>alert(1)</script>")
        page.click("text=mallory@example.org")
        expect(page.locator("#first_name")).to_have_value("<script>alert(1)</script>")

        # Lists: the embed code for a combination, copied with the button.
        page.click("nav >> text=Lists & forms")
        page.screenshot(path=str(ARTIFACTS / "admin-lists.png"), full_page=True)
        page.click("text=Embed code for a form with several lists")
        code = page.locator("#embed-code").input_value()
        assert f'action="{live_app}/subscribe"' in code
        assert 'name="lists" value="newsletter"' in code
        assert 'name="lists" value="action-alerts"' in code
        page.click("text=Copy embed code")
        expect(page.locator(".copied")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == code
        preview = page.frame_locator("iframe.preview")
        expect(preview.locator("input[name=email]")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "admin-embed.png"), full_page=True)

        # The dashboard, with the chart drawn server-side.
        page.click("nav >> text=Dashboard")
        expect(page.locator("svg.chart rect.bar")).to_have_count(90)
        expect(page.locator("table").first).to_contain_text("action-alerts")
        page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        # Admin pages: users and tokens (the token is shown once).
        page.click("nav >> text=API tokens")
        page.fill("#name", "crm-sync")
        page.click("text=Create token")
        expect(page.locator("#new-token")).to_contain_text("al_")
        page.click("text=Copy token")
        expect(page.locator('.copied[data-for="new-token"]')).to_have_text("Copied.")
        token = page.locator("#new-token").inner_text().strip()
        assert page.evaluate("navigator.clipboard.readText()") == token
        page.screenshot(path=str(ARTIFACTS / "admin-tokens.png"), full_page=True)
        page.click("nav >> text=Users")
        page.screenshot(path=str(ARTIFACTS / "admin-users.png"), full_page=True)

        page.click("text=Log out")
        expect(page).to_have_url(f"{live_app}/admin/login")
        context.close()
    assert dialogs == []


def test_import_with_chosen_columns_in_chromium(live_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    members = tmp_path / "members.csv"
    members.write_text(
        "Correo,Nombre,Mail,ZIP\r\n"
        "rosa@example.org,Rosa,rosa.work@example.org,36104\r\n"
        "not-an-address,Zed,,\r\n"
        "ana.garcia@example.org,Ana,,\r\n", encoding="utf-8")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_app}/admin/login")
        log_in_page(page, "admin@example.org")
        page.click("nav >> text=Import & export")
        page.set_input_files("#file", str(members))
        # The page asks the server what the importer would make of each column.
        mail_column = page.get_by_label("Column Mail")
        expect(mail_column).to_have_value("email")
        expect(page.get_by_label("Column Correo")).to_have_value("email")
        expect(page.locator("#column-table")).to_contain_text("rosa.work@example.org")
        mail_column.select_option("attribute")
        page.select_option("#list", "action-alerts")
        page.check("#confirmed")
        page.fill("#consent_note", "Paper sheets from the Montgomery rally")
        page.screenshot(path=str(ARTIFACTS / "admin-import-form.png"), full_page=True)
        page.click("text=Start the import")
        expect(page.locator("#status")).to_have_text("done", timeout=20_000)
        expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100")
        expect(page.locator("#count-created")).to_have_text("1")
        expect(page.locator("#count-invalid")).to_have_text("1")
        page.screenshot(path=str(ARTIFACTS / "admin-import-done.png"), full_page=True)
    rosa = db.session().scalars(
        select(Subscriber).where(Subscriber.email_key == "rosa@example.org")).one()
    assert rosa.attributes == {"Mail (attribute)": "rosa.work@example.org"}
