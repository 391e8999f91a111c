"""Sign-in, sign-out, CSRF, rate limit, and roles on every admin route."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, Rule

from service import db
from service.models import ApiToken, AuditRecord, Role, User
from tests.factories import PASSWORD, user

from .signin import Staff, csrf_token, log_in

# Views any signed-in staff member may POST to (their own session and password).
SELF_SERVICE_POSTS = {
    "admin.logout", "admin.password", "admin.two_factor_setup", "admin.two_factor_confirm",
}


def admin_rules(app: Flask) -> list[Rule]:
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]
    assert len(rules) > 15, "the admin blueprint is not registered"
    return rules


def dummy_url(rule: Rule) -> str:
    """The rule's URL with every argument filled by a plausible dummy value."""
    url = rule.rule
    for name in rule.arguments:
        converter = rule._converters[name]  # noqa: SLF001 - converter type of the argument
        value = "1" if isinstance(converter, IntegerConverter) else "x.eml"
        url = re.sub(rf"<(?:[^>:]+:)?{name}>", value, url)
    return url


def test_every_admin_route_redirects_to_login_when_logged_out(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client)  # so POSTs get past CSRF and reach the login check
    checked = 0
    for rule in admin_rules(app):
        if rule.endpoint == "admin.login":
            continue
        url = dummy_url(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token} if method == "POST" else None
            response = client.open(url, method=method, data=data)
            assert response.status_code == 302, (method, url, response.status_code)
            target = urlsplit(response.location)
            assert target.path == "/admin/login", (method, url, response.location)
            checked += 1
    assert checked > 15


def test_login_page_has_contract_fields(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/admin/login").text
    for name in ("email", "password", "csrf_token"):
        assert f'name="{name}"' in page


def test_good_password_signs_in_and_bad_one_does_not(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    client = app.test_client()
    token = csrf_token(client)
    bad = client.post("/admin/login", data={
        "email": "ana@example.org", "password": "wrong password!", "csrf_token": token})
    assert bad.status_code == 401
    assert "Wrong address or password" in bad.text
    assert client.get("/admin/").status_code == 302
    unknown = client.post("/admin/login", data={
        "email": "nobody@example.org", "password": PASSWORD, "csrf_token": token})
    assert unknown.status_code == 401
    good = client.post("/admin/login?next=/admin/lists", data={
        "email": "ANA@example.org ", "password": PASSWORD, "csrf_token": token})
    assert good.status_code == 302 and good.location == "/admin/lists"
    assert client.get("/admin/").status_code == 200
    logins = db.session().scalars(select(AuditRecord)).all()
    assert [(r.action, r.actor) for r in logins] == [("user.login", "staff:ana@example.org")]


def test_next_never_leaves_the_admin(app: Flask) -> None:
    user("ana@example.org", Role.viewer)
    client = app.test_client()
    token = csrf_token(client)
    for target in ("https://evil.example/admin", "//evil.example/admin", "/subscribe"):
        response = client.post("/admin/login", query_string={"next": target}, data={
            "email": "ana@example.org", "password": PASSWORD, "csrf_token": token})
        assert response.location == "/admin/", target


def test_login_without_csrf_token_is_refused(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    client = app.test_client()
    client.get("/admin/login")
    response = client.post("/admin/login", data={"email": "ana@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_signed_in_post_without_csrf_is_refused(staff: Callable[[str], Staff]) -> None:
    admin = staff("admin")
    response = admin.client.post("/admin/tokens", data={"name": "x", "role": "viewer"})
    assert response.status_code == 400
    assert db.session().scalars(select(ApiToken)).all() == []


def test_login_is_rate_limited(app: Flask) -> None:
    user("ana@example.org", Role.admin)
    client = app.test_client()
    token = csrf_token(client)
    codes = [
        client.post("/admin/login", data={
            "email": "ana@example.org", "password": "wrong password!", "csrf_token": token,
        }).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    # Even the right password waits until the window has passed.
    right = client.post("/admin/login", data={
        "email": "ana@example.org", "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 429


def test_logout_ends_the_session(staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    assert viewer.get("/admin/").status_code == 200
    assert viewer.post("/admin/logout").status_code == 302
    assert viewer.get("/admin/").status_code == 302


def test_deactivated_user_is_signed_out_and_cannot_sign_in(
    app: Flask, staff: Callable[[str], Staff]
) -> None:
    editor = staff("editor")
    user = db.session().query(User).filter_by(email=editor.email).one()
    user.active = False
    db.session().commit()
    assert editor.get("/admin/").status_code == 302
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/admin/login", data={
        "email": editor.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 401


def test_password_change(app: Flask, staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    wrong = viewer.post("/admin/password", {
        "current_password": "not it at all", "new_password": "a new long password",
        "confirm_password": "a new long password"})
    assert wrong.status_code == 422
    short = viewer.post("/admin/password", {
        "current_password": PASSWORD, "new_password": "short", "confirm_password": "short"})
    assert short.status_code == 422
    elsewhere = app.test_client()  # a second session of the same user
    log_in(elsewhere, viewer.email)
    assert elsewhere.get("/admin/").status_code == 200
    ok = viewer.post("/admin/password", {
        "current_password": PASSWORD, "new_password": "a new long password",
        "confirm_password": "a new long password"})
    assert ok.status_code == 302
    assert viewer.get("/admin/").status_code == 200  # the session that changed it stays
    assert elsewhere.get("/admin/").status_code == 302  # every other one is signed out
    client = app.test_client()
    log_in(client, viewer.email, "a new long password")
    assert client.get("/admin/").status_code == 200


def test_viewer_is_refused_every_state_changing_post(
    app: Flask, staff: Callable[[str], Staff]
) -> None:
    """Walks the URL map: no admin POST except the viewer's own session works for a viewer."""
    viewer = staff("viewer")
    refused = 0
    for rule in admin_rules(app):
        if "POST" not in (rule.methods or set()) or rule.endpoint in (
            SELF_SERVICE_POSTS | {"admin.login"}
        ):
            continue
        response = viewer.post(dummy_url(rule), {"name": "x", "role": "admin"})
        assert response.status_code == 403, (rule.rule, response.status_code)
        refused += 1
    assert refused >= 8


def test_pages_hide_buttons_the_role_cannot_use(staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    lists_page = viewer.get("/admin/lists").text
    assert "New list" not in lists_page
    assert "/admin/users" not in viewer.get("/admin/").text
    assert viewer.get("/admin/users").status_code == 403
    assert viewer.get("/admin/tokens").status_code == 403
    assert viewer.get("/admin/audit").status_code == 403
    admin = staff("admin")
    assert "New list" in admin.get("/admin/lists").text
    assert "/admin/users" in admin.get("/admin/").text


def test_login_does_the_same_hash_work_for_unknown_inactive_and_active_users(
    app: Flask, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A login answers in the same time whether or not the address is a usable account:
    every attempt verifies exactly one argon2 hash (a dummy one when there is no account)."""
    from argon2 import PasswordHasher

    user("active@example.org", Role.admin)
    inactive = user("gone@example.org", Role.admin)
    inactive.active = False
    db.session().commit()
    calls: list[str] = []
    real_verify = PasswordHasher.verify

    def counting_verify(self, hash, password):  # type: ignore[no-untyped-def]
        calls.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    client = app.test_client()
    token = csrf_token(client)
    counts = {}
    for case, email, password in [
        ("unknown", "nobody@example.org", PASSWORD),
        ("inactive, right password", "gone@example.org", PASSWORD),
        ("inactive, wrong password", "gone@example.org", "wrong password!"),
        ("active, wrong password", "active@example.org", "wrong password!"),
    ]:
        calls.clear()
        response = client.post("/admin/login", data={
            "email": email, "password": password, "csrf_token": token})
        assert response.status_code == 401, case
        assert "Wrong address or password" in response.text, case
        counts[case] = len(calls)
    assert counts == dict.fromkeys(counts, 1)


def session_cookie(client) -> str:  # type: ignore[no-untyped-def]
    cookie = client.get_cookie("session")
    assert cookie is not None
    return str(cookie.value)


def test_a_logged_out_session_cookie_no_longer_opens_the_admin(
    app: Flask, staff: Callable[[str], Staff]
) -> None:
    """Someone who copied the cookie (a shared computer, a stolen backup) keeps nothing."""
    viewer = staff("viewer")
    stolen = session_cookie(viewer.client)
    assert viewer.post("/admin/logout").status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    response = replay.get("/admin/")
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/admin/login"


def test_a_logged_out_remember_cookie_no_longer_signs_in(
    app: Flask, staff: Callable[[str], Staff]
) -> None:
    from flask_login.utils import encode_cookie

    viewer = staff("viewer")
    account = db.session().query(User).filter_by(email=viewer.email).one()
    with app.test_request_context():
        remember = encode_cookie(account.get_id())
    replay = app.test_client()
    replay.set_cookie("remember_token", remember)
    assert replay.get("/admin/").status_code == 200  # the remember cookie works while valid
    assert viewer.post("/admin/logout").status_code == 302
    after = app.test_client()
    after.set_cookie("remember_token", remember)
    assert after.get("/admin/").status_code == 302


def test_deactivation_ends_sessions_for_good(app: Flask, staff: Callable[[str], Staff]) -> None:
    """Turning an account off and on again does not bring its old sessions back."""
    admin = staff("admin")
    editor = staff("editor")
    account = db.session().query(User).filter_by(email=editor.email).one()
    assert editor.get("/admin/").status_code == 200
    assert admin.post(f"/admin/users/{account.id}/active", {"active": "0"}).status_code == 302
    assert editor.get("/admin/").status_code == 302
    assert admin.post(f"/admin/users/{account.id}/active", {"active": "1"}).status_code == 302
    assert editor.get("/admin/").status_code == 302
    fresh = app.test_client()
    log_in(fresh, editor.email)
    assert fresh.get("/admin/").status_code == 200


def test_a_session_id_that_is_not_ours_is_refused(app: Flask) -> None:
    """Hostile session contents (a forged or malformed user id) never sign anyone in."""
    account = user("ana@example.org", Role.admin)
    for forged in (str(account.id), f"{account.id}:", f"{account.id}:x", "²", "9" * 30,
                   f"{account.id}:{'a' * 5000}", "\u202e1"):
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"] = forged
            sess["_fresh"] = True
        assert client.get("/admin/").status_code == 302, forged
