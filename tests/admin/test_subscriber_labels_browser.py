"""Tags and attributes on the subscriber page, in Chromium: edit, a refusal, axe-core."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from service import db
from service.models import Role, SubscriberTag
from tests.browser import ARTIFACTS, BROWSER_MODULE, assert_accessible, chromium
from tests.factories import subscriber, user
from tests.support import serving

from .signin import log_in_page

PORT = 18541

pytestmark = BROWSER_MODULE


@pytest.fixture
def live_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[tuple[str, int]]:
    app = make_app(public_url=f"http://127.0.0.1:{PORT}")
    with app.app_context():
        user("campaigner@example.org", Role.campaigner)
        user("viewer@example.org", Role.viewer)
        row = subscriber("ana@example.org", first_name="Ana", postal_code="11201", state="NY",
                         attributes={"cd": "NY-10", "chapter": "North"})
        db.session().add(SubscriberTag(subscriber_id=row.id, tag="donor"))
        db.session().commit()
        sid = row.id
        db.database().scoped.remove()
    with serving(app, PORT):
        yield f"http://127.0.0.1:{PORT}", sid


def test_edit_tags_and_attributes_in_chromium(live_app: tuple[str, int]) -> None:
    from playwright.sync_api import expect

    base, sid = live_app
    with chromium() as browser:
        for locale in ("en-US", "es-ES"):
            page = browser.new_context(viewport={"width": 1280, "height": 1000},
                                       locale=locale).new_page()
            page.goto(f"{base}/admin/login")
            log_in_page(page, "campaigner@example.org")
            page.goto(f"{base}/admin/subscribers/{sid}")
            assert_accessible(page, f"subscriber page with tags ({locale})")
            page.close()

        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        page.goto(f"{base}/admin/login")
        log_in_page(page, "campaigner@example.org")
        page.goto(f"{base}/admin/subscribers/{sid}")
        page.fill("#tags", "donor, Phone Bank")
        page.get_by_label("chapter").fill("South")
        page.fill("#new_key", "ward")
        page.fill("#new_value", "9")
        page.get_by_role("button", name="Save tags and attributes").click()
        expect(page.locator("body")).to_contain_text("Tags and attributes saved.")
        expect(page.locator("#tags")).to_have_value("donor, phone bank")
        expect(page.get_by_label("chapter")).to_have_value("South")
        expect(page.get_by_label("ward")).to_have_value("9")

        page.fill("#tags", "ok, bad\u202etag")
        page.get_by_role("button", name="Save tags and attributes").click()
        expect(page.locator("#tags-error")).to_contain_text("Tag 2")
        expect(page.locator("#tags")).to_have_attribute("aria-invalid", "true")
        page.screenshot(path=str(ARTIFACTS / "admin-subscriber-tags-error.png"), full_page=True)
        assert_accessible(page, "subscriber page with a refused tag")

        viewer = browser.new_context().new_page()
        viewer.goto(f"{base}/admin/login")
        log_in_page(viewer, "viewer@example.org")
        viewer.goto(f"{base}/admin/subscribers/{sid}")
        expect(viewer.locator("#labels")).to_contain_text("phone bank")
        expect(viewer.locator("#labels form")).to_have_count(0)
        assert_accessible(viewer, "subscriber page, read only")
