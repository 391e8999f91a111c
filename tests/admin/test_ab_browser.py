"""An A/B subject test from the admin in Chromium: set it up in the editor, send, watch the
variants' figures and the countdown, pick the winner; a real `worker.py` sends through
the sink. axe-core finds no violation on the editor or the campaign page."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from sendgrid_sink import SinkServer
from service import db
from service.models import Role
from tests.browser import ARTIFACTS, assert_accessible, chromium, needs_chromium
from tests.factories import subscribers, user
from tests.support import serving, start_worker, stop_worker, worker_env

from .signin import log_in_page
from .test_campaign_browser import WAIT_MS, Live, wait_until

PORT = 18525
AUDIENCE = 20

pytestmark = [
    pytest.mark.timeout(300),  # a worker's start, a send and four axe runs on a loaded machine
    pytest.mark.browser,
    needs_chromium,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


@pytest.fixture
def live(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Live]:
    url = f"http://127.0.0.1:{PORT}"
    sink = SinkServer(webhook_url=f"{url}/webhooks/sendgrid", webhook_interval=0.5,
                      event_shares={"open": 0.6, "click": 0.3})
    sink.start()
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
        try:
            yield Live(url, app, sink, log)
        finally:
            stop_worker(worker)
            sink.stop()


def test_subject_test_from_editor_to_winner_in_chromium(live: Live) -> None:
    from playwright.sync_api import expect

    url, sink = live.url, live.sink
    dialogs: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.goto(f"{url}/admin/campaigns/new")
        log_in_page(page, "campaigner@example.org")

        page.fill("#name", "Subject test")
        page.fill("#subject", "Plain subject")
        page.fill("#body", "Hi {{ first_name }}.")
        page.check("input[name=lists][value=newsletter]")
        # A malformed set-up is refused on its field, nothing saved.
        page.check("#ab_on")
        page.fill("#ab_subjects", "Only one")
        page.fill("#ab_sample_percent", "50")
        page.fill("#ab_wait_minutes", "30")
        page.click("text=Save draft")
        expect(page.locator("#error-ab_subjects")).to_be_visible(timeout=WAIT_MS)
        assert_accessible(page, "the editor with an A/B error")
        page.fill("#ab_subjects", "Alpha {{ first_name }}\nBeta")
        page.screenshot(path=str(ARTIFACTS / "admin-ab-editor.png"), full_page=True)
        page.click("text=Save draft")
        expect(page.locator("h1")).to_contain_text("Subject test", timeout=WAIT_MS)
        expect(page.locator("#ab-card")).to_contain_text("50%")
        expect(page.locator("#ab-variant-1")).to_contain_text("Beta")
        expect(page.locator("#ab-pick-0")).to_have_count(0)  # not running yet
        assert_accessible(page, "the draft with a subject test")

        page.click("#send-now")
        # The sample (50 % of 20: 5 + 5) goes; its figures and the countdown show live.
        expect(page.locator("#ab-variant-0 .ab-sent")).to_have_text("5", timeout=WAIT_MS)
        expect(page.locator("#ab-variant-1 .ab-sent")).to_have_text("5", timeout=WAIT_MS)
        expect(page.locator("#ab-countdown")).to_have_text(
            re.compile(r"^(29|30):\d\d$"))
        expect(page.locator("#ab-pick-1")).to_be_visible(timeout=WAIT_MS)
        assert len(sink.messages()) == 10
        page.screenshot(path=str(ARTIFACTS / "admin-ab-testing.png"), full_page=True)
        assert_accessible(page, "a campaign during its subject test")

        page.click("#ab-pick-1")
        # The page says what was decided, and still does after its live refresh has
        # reloaded it for the new status (the message is carried over the reload).
        expect(page.locator("#status")).to_have_text("sent", timeout=WAIT_MS)
        expect(page.locator(".flash")).to_contain_text("subject 2", timeout=WAIT_MS)
        expect(page.locator("#ab-variant-1")).to_contain_text("Winner", timeout=WAIT_MS)
        wait_until(lambda: len(sink.messages()) >= AUDIENCE, "every mail at the sink")
        assert_accessible(page, "a decided subject test")
        page.screenshot(path=str(ARTIFACTS / "admin-ab-decided.png"), full_page=True)
        assert any("subject 2" in d for d in dialogs)

    mails = sink.messages()
    assert Counter(m["to"][0]["email"] for m in mails) == Counter(
        f"person{i}@example.com" for i in range(AUDIENCE))
    assert {m["subject"] for m in mails[10:]} == {"Beta"}
    assert {m["subject"] for m in mails[:10]} - {"Beta"} <= {
        f"Alpha First{i}" for i in range(AUDIENCE)}
