"""Signing staff in to the admin: the CSRF token, the login form, a signed-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask.testing import FlaskClient

from tests.factories import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Page

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/admin/login") -> str:
    """The CSRF token of the client's session, read from a rendered form."""
    response = client.get(path)
    match = CSRF.search(response.text)
    assert match, f"no csrf_token field on {path}: {response.status_code} {response.location}"
    return match.group(1)


class SeparateUserClient(FlaskClient):
    """A test client whose every request gets a fresh app context, as real requests do.

    The `app` fixture keeps one app context pushed for the whole test and Flask reuses it
    for test requests, so `g` (Flask-Login's current user, Flask-WTF's CSRF token) would
    leak from one client's request into another's.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        with self.application.app_context():
            return super().open(*args, **kwargs)


@dataclass
class Staff:
    client: FlaskClient
    email: str
    token: str

    def post(self, path: str, data: dict[str, object] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)

    def get(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.get(path, **kwargs)


def log_in(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    token = csrf_token(client)
    response = client.post(
        "/admin/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.text
    return token


def log_in_page(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the admin's login form, which `page` (Playwright) is showing."""
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
