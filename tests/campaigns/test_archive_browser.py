"""The archive, a recipient's own copy and the list form's welcome in Chromium: axe finds
nothing, and a script in a campaign body does not run (the CSP wants the nonce)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from flask import Flask

from service import db
from service.db import utcnow
from service.models import CampaignKind, CampaignStatus, Role, SubscriptionStatus
from service.tokens import view_token
from tests.admin.signin import log_in_page
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import campaign, delivery, list_id, subscriber, user
from tests.support import serving

PORT = 18437

pytestmark = BROWSER_MODULE

BODY = ("Hello {{ first_name or 'friend' }}.\n\n[Read more](https://example.org/more)\n\n"
        "<script>window.injected = 1;</script>")


@pytest.fixture
def live_app(make_app: Callable[..., Flask]) -> Iterator[tuple[str, int, str]]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("admin@example.org", Role.admin)
        person = subscriber("ana@example.org", first_name="Ana", locale="es",
                            lists={"newsletter": SubscriptionStatus.confirmed})
        sent = campaign("Archived", kind=CampaignKind.newsletter, subject="Big news",
                        body=BODY, lists=["newsletter"], status=CampaignStatus.sent,
                        commit=False)
        sent.archive = True
        sent.variants = {"es": {"subject": "Grandes noticias", "body": "Hola {{ first_name }}."}}
        sent.finished_at = utcnow() - timedelta(hours=1)
        db.session().commit()
        delivery(sent.id, person.id)
        token = view_token(sent.id, person.id)
        campaign_id = sent.id
        assert list_id("newsletter")
        db.database().scoped.remove()
    with serving(app, PORT) as url:
        yield url, campaign_id, token


def test_public_pages_are_accessible_and_run_no_injected_script(live_app) -> None:
    url, campaign_id, token = live_app
    csp_errors: list[str] = []
    with chromium() as browser:
        for lang in ("en-US", "es-ES"):
            context = browser.new_context(locale=lang)
            page = context.new_page()
            page.on("console", lambda m: csp_errors.append(m.text)
                    if "Content Security Policy" in m.text else None)
            for path in ("/archive", f"/archive/{campaign_id}", f"/view/{token}",
                         "/view/1.2.nope", "/archive/999999"):
                page.goto(f"{url}{path}")
                assert_accessible(page, f"{path} ({lang})")
                assert page.evaluate("window.injected") is None
            page.goto(f"{url}/archive/{campaign_id}")
            heading = page.locator("h1").inner_text()
            assert heading == ("Grandes noticias" if lang == "es-ES" else "Big news")
            page.screenshot(path=str(ARTIFACTS / f"archive-{lang}.png"))
            context.close()
    # The page's own inline script would need the nonce; the injected one is refused.
    assert any("script-src" in e for e in csp_errors), csp_errors


def test_list_form_with_welcome_preview_is_accessible(live_app) -> None:
    url, _campaign_id, _token = live_app
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{url}/admin/login")
        log_in_page(page, "admin@example.org")
        page.goto(f"{url}/admin/lists/{1}/edit")
        page.fill("#welcome_en_subject", "Welcome {{ first_name }}")
        page.fill("#welcome_en_body", "Thanks for joining, **{{ first_name }}**.")
        page.click("button[value=preview]")
        frame = page.frame_locator("iframe[title='Welcome preview (en)']")
        assert "Thanks for joining" in frame.locator("body").inner_text()
        assert_accessible(page, "list form with welcome preview")
        page.click("button[value=save]")
        page.goto(f"{url}/admin/lists/{1}/edit")
        assert page.input_value("#welcome_en_subject") == "Welcome {{ first_name }}"
        page.screenshot(path=str(ARTIFACTS / "list-welcome.png"))
