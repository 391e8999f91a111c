"""Signup from another website in a real browser: the embed code on a second origin.

A partner page served from its own origin carries the plain HTML form (as the admin's
embed code gives it) and the hosted form in an iframe. Debian Chromium fills in and
submits the plain form, lands on the thank-you page, then opens the confirmation link
from the mail the sink recorded and presses Confirm.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from service import db
from service.models import Subscriber
from tests.browser import ARTIFACTS, BROWSER_MODULE, chromium

APP_PORT = 18130
PARTNER_PORT = 18131
APP = f"http://127.0.0.1:{APP_PORT}"
PARTNER = f"http://localhost:{PARTNER_PORT}"  # another host and port: another origin

pytestmark = BROWSER_MODULE

PARTNER_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner campaign page</title></head>
<body>
<h1>Stop the raids: join us</h1>
<form method="post" action="{APP}/subscribe">
  <label>Email <input type="email" name="email" required></label>
  <label>First name <input type="text" name="first_name"></label>
  <label>ZIP <input type="text" name="postal_code"></label>
  <label><input type="checkbox" name="lists" value="action-alerts" checked> Action alerts</label>
  <input type="hidden" name="source" value="partner-page">
  <div style="position:absolute;left:-5000px" aria-hidden="true">
    <input type="text" name="website" tabindex="-1" autocomplete="off">
  </div>
  <button type="submit">Sign up</button>
</form>
<iframe title="hosted form" src="{APP}/subscribe?lists=newsletter&amp;lang=es"
        width="600" height="500"></iframe>
</body></html>
"""


class PartnerHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = PARTNER_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def servers(make_app) -> Iterator[object]:  # type: ignore[no-untyped-def]
    app = make_app(public_url=APP, form_allowed_origins=(PARTNER,))
    app_server = make_server("127.0.0.1", APP_PORT, app, threaded=True)
    partner = ThreadingHTTPServer(("127.0.0.1", PARTNER_PORT), PartnerHandler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (app_server, partner)]
    for thread in threads:
        thread.start()
    try:
        yield app
    finally:
        for server in (app_server, partner):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)


def test_embedded_form_on_another_origin_signs_up_and_confirms(servers, sink):
    app = servers
    with chromium() as browser:
        page = browser.new_page(locale="en-US")
        page.goto(f"{PARTNER}/")
        # The hosted form renders inside the partner's iframe: the partner's origin is
        # in FORM_ALLOWED_ORIGINS, so the form's frame-ancestors lets it in.
        hosted = page.frame_locator("iframe[title='hosted form']")
        assert hosted.locator("h1").inner_text() == "Suscríbete"
        page.screenshot(path=str(ARTIFACTS / "embed-partner-page.png"), full_page=True)

        page.get_by_label("Email").fill("rosa.parks@example.org")
        page.get_by_label("First name").fill("Rosa")
        page.get_by_label("ZIP").fill("36104")
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url(f"{APP}/subscribe/thanks**")
        assert page.locator("h1").inner_text() == "Check your email"

        with app.app_context():
            from service.queue import task_queue

            task_queue().local.drain()  # type: ignore[union-attr]
        [mail] = [m for m in sink.messages() if m["to"][0]["email"] == "rosa.parks@example.org"]
        match = re.search(re.escape(APP) + r"/confirm/[A-Za-z0-9_.\-]+", mail["text"])
        assert match, mail["text"]

        page.goto(match.group(0))
        with app.app_context():
            assert _statuses("rosa.parks@example.org") == {"action-alerts": "pending"}
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Subscription confirmed"
        page.screenshot(path=str(ARTIFACTS / "embed-confirmed.png"), full_page=True)

    with app.app_context():
        assert _statuses("rosa.parks@example.org") == {"action-alerts": "confirmed"}
        subscriber = db.session().scalars(
            select(Subscriber).where(Subscriber.email_key == "rosa.parks@example.org")
        ).one()
        assert subscriber.first_name == "Rosa" and subscriber.state == "AL"
        sources = [c.source for c in subscriber.consent_records]
        assert "partner-page" in sources[0]


def test_a_site_not_allowed_cannot_frame_the_form(servers):
    """The same partner page from another origin (127.0.0.1 is not localhost): Chromium
    refuses to frame the hosted form, and says which directive refused it."""
    with chromium() as browser:
        page = browser.new_page()
        refusals: list[str] = []
        page.on("console", lambda message: refusals.append(message.text)
                if "frame-ancestors" in message.text else None)
        page.goto(f"http://127.0.0.1:{PARTNER_PORT}/")
        page.wait_for_timeout(1000)
        assert refusals, "the hosted form was framed by an origin not allowed"
        frame = next(f for f in page.frames if f != page.main_frame)
        assert "Suscríbete" not in frame.content()


def _statuses(email_key: str) -> dict[str, str]:
    session = db.session()
    session.expire_all()
    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.email_key == email_key)
    ).one()
    return {s.mailing_list.slug: s.status.value for s in subscriber.subscriptions}
