"""The Webhooks admin page in Debian Chromium: add an endpoint, copy the secret, send a
test event, read the log, the disabled state; axe-core finds no violation, in English
and in Spanish."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from service import db
from service.models import OutgoingEndpoint, Role
from tests.admin.signin import log_in_page
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import user
from tests.support import serving

from . import receiver as receivers
from .conftest import FAST

PORT = 18561

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_app(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}", **FAST)
    with app.app_context():
        user("admin@example.org", Role.admin)
        db.database().scoped.remove()
    with serving(app, PORT) as url:
        yield app, url


def test_webhooks_page(live_app: tuple[Flask, str]) -> None:
    from playwright.sync_api import expect

    app, base = live_app
    receiver = receivers.start()
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/admin/login")
            log_in_page(page, "admin@example.org")
            page.goto(f"{base}/admin/webhooks")
            expect(page.get_by_role("heading", name="Outgoing webhooks")).to_be_visible()
            assert_accessible(page, "webhooks, empty")

            page.get_by_label("Receiver URL (http:// or https://)").fill("ftp://example.org/")
            page.get_by_label("subscriber.confirmed").check()
            page.evaluate("document.querySelector('#url').type = 'text'")  # past the browser's check
            page.get_by_role("button", name="Add endpoint").click()
            expect(page.locator("#url-error")).to_contain_text("Only http:// and https://")
            assert_accessible(page, "webhooks, refused URL")

            page.get_by_label("Receiver URL (http:// or https://)").fill(receiver.url)
            page.get_by_label("campaign.sent").check()
            page.get_by_role("button", name="Add endpoint").click()
            secret = page.locator("#new-secret").inner_text().strip()
            assert secret.startswith("whsec_")
            receiver.secret = secret
            page.screenshot(path=str(ARTIFACTS / "admin-webhook-secret.png"), full_page=True)
            assert_accessible(page, "webhook, secret shown once")

            page.get_by_role("button", name="Send test event").click()
            expect(page.locator(".flash").first).to_contain_text("Test event")
            for _ in range(100):  # the in-process worker delivers it
                if receiver.received:
                    break
                page.wait_for_timeout(100)
            page.reload()
            expect(page.locator("table tbody tr").first).to_contain_text("200")
            assert receiver.bad_signatures == 0
            assert secret not in page.content()
            assert_accessible(page, "webhook, delivery log")

            with app.app_context():
                session = db.session()
                endpoint = session.query(OutgoingEndpoint).one()
                endpoint.enabled = False
                endpoint.disabled_reason = "Every delivery failed since 2026-12-06T06:00:00Z."
                session.commit()
                endpoint_id = endpoint.id
                db.database().scoped.remove()
            page.goto(f"{base}/admin/webhooks/{endpoint_id}")
            expect(page.get_by_role("alert")).to_contain_text("1 outgoing webhook is disabled")
            page.screenshot(path=str(ARTIFACTS / "admin-webhook-disabled.png"), full_page=True)
            assert_accessible(page, "webhook, disabled")

            page.goto(f"{base}/admin/webhooks?lang=es")
            expect(page.get_by_role("heading", name="Webhooks salientes")).to_be_visible()
            assert_accessible(page, "webhooks, Spanish")
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
