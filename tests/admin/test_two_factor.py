"""Staff two-factor authentication: the command, the login's `code`, enrolment in the admin,
recovery codes, replay and rate limits, and STAFF_REQUIRE_2FA."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select

from service import db
from service.models import AuditRecord, Role, StaffRecoveryCode, User
from tests.factories import PASSWORD, user

from .signin import Staff, csrf_token

TOTP_KEY = re.compile(r'<code id="totp-key">([A-Z2-7]+)</code>')


def enable_by_command(app: Flask, email: str) -> tuple[str, list[str], str]:
    """`actionlist users 2fa EMAIL` → (secret from the printed URI, recovery codes, output)."""
    result = app.test_cli_runner().invoke(args=["users", "2fa", email])
    assert result.exit_code == 0, result.output
    uri = result.stdout.strip()
    assert uri.startswith("otpauth://totp/") and "\n" not in uri
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    codes = re.findall(r"^  (\S+)$", result.output, re.M)
    assert len(codes) == 10
    return secret, codes, result.output


def login(app: Flask, email: str, code: str | None = None, password: str = PASSWORD,
          ip: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    if code is not None:
        data["code"] = code
    return client, client.post("/admin/login", data=data)


def previous_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(time.time() - 30)


def test_command_turns_on_totp_and_login_needs_the_code(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    secret, _codes, output = enable_by_command(app, "ana@example.org")
    assert "ana%40example.org" in output and "issuer=" in output
    account = db.session().scalars(select(User)).one()
    # Stored encrypted: the secret is in no column.
    assert account.totp_secret and secret not in account.totp_secret
    assert account.totp_enabled_at is not None

    _, missing = login(app, "ana@example.org")
    assert missing.status_code == 401
    assert "6-digit code" in missing.text
    _, wrong = login(app, "ana@example.org", "000000" if pyotp.TOTP(secret).now() != "000000"
                     else "111111")
    assert wrong.status_code == 401
    _, wrong_password = login(app, "ana@example.org", pyotp.TOTP(secret).now(), "not the one!")
    assert wrong_password.status_code == 401
    assert "Wrong address or password" in wrong_password.text
    client, good = login(app, "ana@example.org", pyotp.TOTP(secret).now())
    assert good.status_code == 302
    assert client.get("/admin/").status_code == 200
    # The 2FA page never shows the secret again.
    page = client.get("/admin/2fa").text
    assert "<strong>On.</strong>" in page and secret not in page


def test_a_code_works_once(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    secret, _codes, _ = enable_by_command(app, "ana@example.org")
    code = pyotp.TOTP(secret).now()
    _, first = login(app, "ana@example.org", code)
    assert first.status_code == 302
    _, replay = login(app, "ana@example.org", code)
    assert replay.status_code == 401
    assert "used already" in replay.text
    # A code of an earlier step, still inside the window, is refused after a later one.
    _, older = login(app, "ana@example.org", previous_code(secret))
    assert older.status_code == 401


def test_recovery_codes_work_once_each(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    _secret, codes, _ = enable_by_command(app, "ana@example.org")
    stored = db.session().scalars(select(StaffRecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not set(codes) & set(stored)  # hashed, never as they are
    client, first = login(app, "ana@example.org", f" {codes[0].upper()} ")
    assert first.status_code == 302
    assert "9 unused recovery codes" in client.get("/admin/2fa").text
    _, again = login(app, "ana@example.org", codes[0])
    assert again.status_code == 401
    _, other = login(app, "ana@example.org", codes[1].replace("-", ""))
    assert other.status_code == 302


@pytest.mark.parametrize("hostile", [
    "１２３４５６", "123456\u202e", "=1+1", "0" * 100_000, "\x00\r\n", "12345", "1234567",
])
def test_hostile_codes_are_refused_plainly(app: Flask, hostile: str) -> None:
    user("ana@example.org", Role.admin)
    enable_by_command(app, "ana@example.org")
    _, response = login(app, "ana@example.org", hostile)
    assert response.status_code == 401
    assert "Authentication code" in response.text


def test_codes_are_rate_limited_per_account_whatever_the_ip(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    secret, _codes, _ = enable_by_command(app, "ana@example.org")
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    statuses = [login(app, "ana@example.org", wrong, ip=f"10.0.0.{i}")[1].status_code
                for i in range(6)]
    assert statuses == [401] * 5 + [429]
    # The right code from yet another address waits too.
    _, right = login(app, "ana@example.org", pyotp.TOTP(secret).now(), ip="10.0.1.1")
    assert right.status_code == 429


def test_wrong_passwords_do_not_use_up_the_code_limit(app: Flask) -> None:
    """Only someone who knows the password can exhaust an account's code attempts."""
    user("ana@example.org", Role.admin)
    secret, _codes, _ = enable_by_command(app, "ana@example.org")
    for i in range(8):
        _, response = login(app, "ana@example.org", "000000", password="guess guess!",
                            ip=f"10.0.0.{i}")
        assert response.status_code == 401
    _, right = login(app, "ana@example.org", pyotp.TOTP(secret).now(), ip="10.0.1.1")
    assert right.status_code == 302


def test_enrolment_in_the_admin(app: Flask, staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    assert "<strong>Off.</strong>" in viewer.get("/admin/2fa").text
    setup = viewer.post("/admin/2fa/setup")
    assert setup.status_code == 200
    assert setup.headers["Cache-Control"] == "no-store"
    assert "<svg" in setup.text and "otpauth" not in setup.text.split("<svg")[0]
    secret = TOTP_KEY.search(setup.text).group(1)  # type: ignore[union-attr]
    wrong = viewer.post("/admin/2fa/confirm", {"code": "12345x"})
    assert wrong.status_code == 422
    assert secret in wrong.text  # the same enrolment goes on
    done = viewer.post("/admin/2fa/confirm", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == 10
    assert "<strong>On.</strong>" in viewer.get("/admin/2fa").text
    assert secret not in viewer.get("/admin/2fa").text
    # A second set-up is refused: the secret is never shown again.
    again = viewer.post("/admin/2fa/setup")
    assert again.status_code == 302
    assert secret not in viewer.get("/admin/2fa").text
    _, without = login(app, viewer.email)
    assert without.status_code == 401
    _, recovered = login(app, viewer.email, codes[3])
    assert recovered.status_code == 302
    actions = db.session().scalars(select(AuditRecord.action)).all()
    assert "user.2fa_enable" in actions


def test_enrolment_confirmation_is_rate_limited(staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    viewer.post("/admin/2fa/setup")
    statuses = [viewer.post("/admin/2fa/confirm", {"code": "000000"}).status_code
                for _ in range(6)]
    assert 429 in statuses and statuses[0] == 422


def test_required_2fa_sends_staff_to_enrolment_and_allows_nothing_else(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(staff_require_2fa=True)
    from .signin import SeparateUserClient

    app.test_client_class = SeparateUserClient
    with app.app_context():
        user("ana@example.org", Role.admin)
        client, response = login(app, "ana@example.org")
        assert response.status_code == 302
        assert urlsplit(response.location).path == "/admin/2fa"
        token = csrf_token(client, "/admin/2fa")
        for path in ("/admin/", "/admin/subscribers", "/admin/users", "/admin/password"):
            blocked = client.get(path)
            assert blocked.status_code == 302, path
            assert urlsplit(blocked.location).path == "/admin/2fa", path
        created = client.post("/admin/tokens", data={
            "name": "sneaky", "role": "admin", "csrf_token": token})
        assert created.status_code == 302
        assert urlsplit(created.location).path == "/admin/2fa"
        assert "sneaky" not in client.get("/admin/2fa").text
        setup = client.post("/admin/2fa/setup", data={"csrf_token": token})
        secret = TOTP_KEY.search(setup.text).group(1)  # type: ignore[union-attr]
        confirmed = client.post("/admin/2fa/confirm", data={
            "code": pyotp.TOTP(secret).now(), "csrf_token": token})
        assert confirmed.status_code == 200
        assert client.get("/admin/subscribers").status_code == 200
        from service.models import ApiToken

        assert db.session().scalars(select(ApiToken)).all() == []


def test_command_refuses_an_unknown_user(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["users", "2fa", "nobody@example.org"])
    assert result.exit_code != 0
    assert "No user nobody@example.org" in result.output
    assert "otpauth" not in result.output
