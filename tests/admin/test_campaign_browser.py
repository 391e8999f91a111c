"""A campaign from the admin in a real browser: Chromium against a live server on
PostgreSQL + Redis, a real `worker.py`, and the SendGrid sink posting signed events back.

Log in, write a campaign, preview it in Spanish, test-send it, send it, watch the progress
bar reach 100 %, open its statistics. Every wait is an explicit condition with a generous
deadline, so a loaded machine makes the test slower, not flaky.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from sendgrid_sink import SinkServer
from service import db
from service.models import Role
from service.webhooks.stats import campaign_stats
from tests.browser import ARTIFACTS, chromium, needs_chromium
from tests.factories import subscribers, user
from tests.support import serving, start_worker, stop_worker, worker_env

from .signin import log_in_page

PORT = 18521
AUDIENCE = 40
WAIT_MS = 60_000  # per browser expectation; generous for a loaded 2-core machine
WAIT_S = 90.0

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


@dataclass
class Live:
    url: str
    app: Flask
    sink: SinkServer
    worker_log: Path


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll `condition` until it is truthy (an explicit wait with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def live(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Live]:
    url = f"http://127.0.0.1:{PORT}"
    # Every sent mail is delivered, 60 % opened, 50 % clicked: the events come back signed.
    sink = SinkServer(webhook_url=f"{url}/webhooks/sendgrid", webhook_interval=0.5,
                      event_shares={"open": 0.6, "click": 0.5})
    sink.start()
    # Each send request takes 1 s: sending 8 batches takes long enough to pause half-way.
    sink.set_faults(1.0, ["slow"], slow_seconds=1.0)
    app = make_app(public_url=url, sendgrid_api_host=sink.url, campaign_batch_size=5,
                   sendgrid_webhook_public_key=sink.public_key_b64)
    conf = app.extensions["settings"]
    with app.app_context():
        user("campaigner@example.org", Role.campaigner)
        subscribers(AUDIENCE, locale_es_every=4)
        db.database().scoped.remove()
    env = worker_env(app, sink.url, SENDGRID_WEBHOOK_PUBLIC_KEY=sink.public_key_b64,
                     PUBLIC_URL=url, ORG_NAME=conf.org_name,
                     ORG_POSTAL_ADDRESS=conf.org_postal_address, MAIL_FROM=conf.mail_from,
                     CAMPAIGN_BATCH_SIZE="5")
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    with serving(app, PORT):
        yield Live(url, app, sink, log)
        stop_worker(worker)
        sink.stop()


def test_campaign_from_editor_to_statistics_in_chromium(live: Live) -> None:
    from playwright.sync_api import expect

    url, sink = live.url, live.sink
    dialogs: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

        page.goto(f"{url}/admin/campaigns")
        expect(page).to_have_url(f"{url}/admin/login?next=%2Fadmin%2Fcampaigns")
        log_in_page(page, "campaigner@example.org")
        expect(page.locator("h1")).to_contain_text("Campaigns")

        # The editor: live audience count and a preview in each language.
        page.click("text=New campaign")
        page.fill("#name", "November rally")
        page.select_option("#kind", "alert")
        page.fill("#subject", "Rally {{ first_name }}")
        page.fill("#preheader", "Saturday at noon, City Hall")
        page.fill("#body", "# Join us\n\nHi {{ first_name }}, the vote is Monday.\n\n"
                           "[RSVP here](https://act.example.org/rsvp)")
        page.fill("#es_subject", "Manifestación {{ first_name }}")
        page.fill("#es_body", "# Únete\n\nHola {{ first_name }}, la votación es el lunes.\n\n"
                              "[Confirma aquí](https://act.example.org/rsvp)")
        page.check("input[name=lists][value=newsletter]")
        expect(page.locator("#audience-count")).to_have_text(f"{AUDIENCE} people")
        page.fill("#states", "NY")
        expect(page.locator("#audience-count")).to_have_text("0 people")
        page.fill("#states", "")
        expect(page.locator("#audience-count")).to_have_text(f"{AUDIENCE} people")
        preview = page.frame_locator("#preview")
        expect(preview.locator("body")).to_contain_text("Hi Ana, the vote is Monday.")
        page.click("#tab-es")
        expect(page.locator("#preview-subject")).to_have_text("Manifestación Ana")
        expect(preview.locator("h1")).to_have_text("Únete")
        expect(preview.locator("body")).to_contain_text("Darse de baja")
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-editor-es.png"), full_page=True)
        page.click("text=Save draft")
        expect(page.locator("h1")).to_contain_text("November rally")
        expect(page.locator("#audience")).to_have_text(str(AUDIENCE))

        # Test send to a staff address: it reaches the sink, marked [TEST].
        page.fill("#emails", "staff@example.org")
        page.click("#test-send")
        expect(page.locator(".flash")).to_contain_text("Test send queued")
        test_mail = wait_until(
            lambda: [m for m in sink.messages() if m["to"][0]["email"] == "staff@example.org"],
            "the test mail at the sink")
        assert test_mail[0]["subject"] == "[TEST] Rally Test"
        page.click("#mail-es")
        expect(page.frame_locator("#mail").locator("h1")).to_have_text("Únete")
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-draft.png"), full_page=True)

        # Send now; pause half-way, resume; the bar follows the worker to 100 %.
        page.click("#send-now")
        expect(page.locator("#progress-bar")).to_be_visible()
        expect(page.locator('#progress-card[data-status="sending"]')).to_be_attached()
        # The bar moves while the page polls (the first of 8 one-second batches is done).
        expect(page.locator("#progress-done")).not_to_have_text("0")
        page.click("#pause")
        expect(page.locator(".flash")).to_have_text("Paused.")
        expect(page.locator("#status")).to_have_text("paused")
        halfway = float(page.locator("#progress-bar").get_attribute("aria-valuenow") or 0)
        assert 0 < halfway < 100
        expect(page.frame_locator("#mail").locator("h1")).to_have_text("Join us")
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-paused.png"), full_page=True)
        page.click("#resume")
        expect(page.locator(".flash")).to_have_text("Resumed.")
        expect(page.locator("#progress-bar")).to_have_attribute(
            "aria-valuenow", "100", timeout=WAIT_S * 1000)
        expect(page.locator("#status")).to_have_text("sent", timeout=WAIT_S * 1000)
        # The page reloads for the new state: the buttons of a sending campaign go.
        expect(page.locator('#progress-card[data-status="sent"]')).to_be_attached()
        expect(page.locator("#pause")).to_have_count(0)
        expect(page.locator("#cancel")).to_have_count(0)
        expect(page.locator("#progress-done")).to_have_text(str(AUDIENCE))
        expect(page.locator("#progress-total")).to_have_text(str(AUDIENCE))
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-sent.png"), full_page=True)
        assert dialogs and dialogs[0].startswith("Send “November rally” to 40 people")
        campaign_mail = [m for m in sink.messages() if "[TEST]" not in m["subject"]]
        assert len(campaign_mail) == AUDIENCE
        assert {m["subject"] for m in campaign_mail} >= {"Rally First1",
                                                       "Manifestación First0"}

        # Statistics: the sink's events come back through the webhook and the worker.
        campaign_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        sink.flush_events()

        def delivered() -> int:
            with live.app.app_context():
                figures = campaign_stats(db.session(), campaign_id)
                db.database().scoped.remove()
            return int(figures["delivered"]) if figures["clicks"] else 0

        wait_until(lambda: (sink.flush_events() or True) and delivered() >= AUDIENCE,
                   f"delivered events for the campaign ({live.worker_log})")
        page.click("text=Statistics")
        expect(page.locator("h1")).to_contain_text("Statistics")
        # Only the campaign's own mail counts, not the test send.
        expect(page.locator("#fig-delivered")).to_have_text(str(AUDIENCE))
        expect(page.locator("svg.chart rect.bar").first).to_be_attached()
        expect(page.locator("#top-links tbody td").first).to_contain_text("http")
        page.screenshot(path=str(ARTIFACTS / "admin-campaign-stats.png"), full_page=True)

        page.click("nav >> text=Campaigns")
        expect(page.locator("table tbody")).to_contain_text("November rally")
        page.screenshot(path=str(ARTIFACTS / "admin-campaigns.png"), full_page=True)
        context.close()
