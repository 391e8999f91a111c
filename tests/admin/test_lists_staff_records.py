"""Lists and embed code, users and API tokens, suppressions, audit log and outbox."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.mail.base import OutgoingMail, Personalization
from service.mail.outbox import OutboxTransport
from service.models import ApiToken, MailingList, SuppressionReason, User
from tests import factories
from tests.factories import PASSWORD, suppression

from .signin import Staff, csrf_token


def test_admin_creates_and_edits_a_list(staff: Callable[[str], Staff], client: FlaskClient) -> None:
    admin = staff("admin")
    created = admin.post("/admin/lists/new", {
        "slug": "spanish-alerts", "name_en": "Spanish alerts", "name_es": "Alertas",
        "description_en": "Alerts in Spanish", "description_es": "Alertas en español",
        "public": "on"})
    assert created.status_code == 302
    ml = db.session().scalars(select(MailingList).where(MailingList.slug == "spanish-alerts")).one()
    assert (ml.name_es, ml.public) == ("Alertas", True)
    signup = {"email": "early@example.org", "lists": ["spanish-alerts"]}
    assert client.post("/api/v1/subscriptions", json=signup).status_code == 202
    dup = admin.post("/admin/lists/new", {"slug": "newsletter", "name_en": "Again"})
    assert dup.status_code == 422 and "already has this slug" in dup.text
    bad = admin.post("/admin/lists/new", {"slug": "Bad Slug!", "name_en": "x"})
    assert bad.status_code == 422
    edited = admin.post(f"/admin/lists/{ml.id}/edit", {
        "slug": "renamed", "name_en": "Spanish action alerts", "name_es": "Alertas"})
    assert edited.status_code == 302
    db.session().expire_all()
    ml = db.session().scalars(select(MailingList).where(MailingList.slug == "spanish-alerts")).one()
    assert (ml.name_en, ml.public) == ("Spanish action alerts", False)
    # Now private: refused at once by this process (the edit dropped its list cache).
    signup["email"] = "late@example.org"
    assert client.post("/api/v1/subscriptions", json=signup).status_code == 422
    assert staff("campaigner").post("/admin/lists/new", {
        "slug": "nope", "name_en": "Nope"}).status_code == 403


def test_embed_code_for_a_combination(app: Flask, staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    page = viewer.get("/admin/lists/embed?lists=newsletter&lists=action-alerts&lang=es").text
    code = html.unescape(re.search(r'<textarea id="embed-code"[^>]*>(.*?)</textarea>',
                                   page, re.S).group(1))  # type: ignore[union-attr]
    assert '<form method="post" action="http://localhost/subscribe"' in code
    assert '<input type="hidden" name="lists" value="newsletter">' in code
    assert '<input type="hidden" name="lists" value="action-alerts">' in code
    assert '<input type="hidden" name="lang" value="es">' in code
    assert 'name="website"' in code and 'name="email"' in code
    assert "csrf_token" not in code  # other sites post it without a session
    assert "http://localhost/subscribe?lists=newsletter%2Caction-alerts&amp;lang=es" in page
    assert 'src="/subscribe?lists=newsletter%2Caction-alerts&amp;lang=es"' in page
    # The snippet really works: posting it as a browser would is accepted.
    client = app.test_client()
    response = client.post("/subscribe", data={
        "lists": ["newsletter", "action-alerts"], "lang": "es", "email": "embed@example.org",
        "website": ""})
    assert response.status_code == 303
    # Unknown slugs are ignored rather than echoed into the code.
    page = viewer.get("/admin/lists/embed?lists=<b>x</b>").text
    assert "<b>x</b>" not in page


def test_users_create_and_deactivate(app: Flask, staff: Callable[[str], Staff]) -> None:
    admin = staff("admin")
    created = admin.post("/admin/users", {
        "email": "new.editor@example.org", "role": "editor", "password": PASSWORD})
    assert created.status_code == 302
    assert admin.post("/admin/users", {
        "email": "new.editor@example.org", "role": "editor", "password": PASSWORD,
    }).status_code == 422
    assert admin.post("/admin/users", {
        "email": "short@example.org", "role": "editor", "password": "short"}).status_code == 422
    user = db.session().scalars(select(User).where(User.email == "new.editor@example.org")).one()
    assert user.role == "editor"
    client = app.test_client()
    token = csrf_token(client)
    assert client.post("/admin/login", data={
        "email": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 200
    assert admin.post(f"/admin/users/{user.id}/active", {"active": "0"}).status_code == 302
    assert client.get("/admin/").status_code == 302  # signed out at once
    me = db.session().scalars(select(User).where(User.email == admin.email)).one()
    admin.post(f"/admin/users/{me.id}/active", {"active": "0"})
    db.session().expire_all()
    assert db.session().get(User, me.id).active  # type: ignore[union-attr]


def test_api_token_shown_once_works_and_can_be_revoked(
    app: Flask, staff: Callable[[str], Staff]
) -> None:
    admin = staff("admin")
    created = admin.post("/admin/tokens", {"name": "crm-sync", "role": "viewer"})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token">([^<]+)<', created.text).group(1)  # type: ignore[union-attr]
    api = app.test_client()
    assert api.get("/api/v1/lists", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = admin.get("/admin/tokens").text
    assert secret not in listing and "crm-sync" in listing
    row = db.session().scalars(select(ApiToken).where(ApiToken.name == "crm-sync")).one()
    assert admin.post(f"/admin/tokens/{row.id}/revoke").status_code == 302
    assert api.get("/api/v1/lists", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_suppressions_and_audit_log(staff: Callable[[str], Staff]) -> None:
    suppression("bounced@example.org", SuppressionReason.bounce, source="webhook",
                digest="a" * 64)
    suppression("", SuppressionReason.erased, keep_address=False, digest="b" * 64)
    page = staff("viewer").get("/admin/suppressions").text
    assert "bounced@example.org" in page and "(erased — hash only)" in page
    admin = staff("admin")
    admin.post("/admin/tokens", {"name": "audited", "role": "viewer"})
    audit = admin.get("/admin/audit").text
    assert "token.create" in audit and f"staff:{admin.email}" in audit


def _write_mail(directory: Path) -> str:
    OutboxTransport(str(directory)).send(OutgoingMail(
        from_email="alerts@example.org", from_name="Alerts", subject="Confirm your signup",
        html='<p>Hello <b>there</b></p><script>parent.alert(1)</script>', text="Hello there",
        personalizations=[Personalization(email="ana@example.org", name="Ana")],
    ))
    return next(directory.glob("*.eml")).name


def _sign_in(app: Flask, email: str, role: str) -> FlaskClient:
    from service.models import Role

    with app.app_context():
        factories.user(email, Role(role))
    client = app.test_client()
    token = csrf_token(client)
    client.post("/admin/login", data={"email": email, "password": PASSWORD,
                                      "csrf_token": token})
    return client


def test_outbox_is_read_by_admins_only(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Outbox mails hold live links (preferences: export and erase): admins only."""
    outbox = tmp_path / "mail"
    app = make_app(sendgrid_api_key="", outbox_dir=str(outbox))
    name = _write_mail(outbox)
    for role in ("viewer", "campaigner"):
        lower = _sign_in(app, f"{role}@example.org", role)
        assert lower.get("/admin/outbox").status_code == 403
        assert lower.get(f"/admin/outbox/{name}").status_code == 403
        page = lower.get("/admin/")
        assert page.status_code == 200 and "/admin/outbox" not in page.text
    client = _sign_in(app, "admin@example.org", "admin")
    assert "/admin/outbox" in client.get("/admin/").text
    listing = client.get("/admin/outbox").text
    assert "Confirm your signup" in listing and name in listing
    message = client.get(f"/admin/outbox/{name}").text
    assert 'sandbox=""' in message
    assert "srcdoc=\"&lt;p&gt;Hello &lt;b&gt;there&lt;/b&gt;&lt;/p&gt;" in message
    assert "<script>parent.alert(1)</script>" not in message
    assert "Hello there" in message
    assert client.get("/admin/outbox/..%2f..%2fetc%2fpasswd").status_code == 404
    assert client.get("/admin/outbox/missing.eml").status_code == 404


def test_outbox_hidden_when_sendgrid_is_configured(staff: Callable[[str], Staff]) -> None:
    admin = staff("admin")  # the test settings carry a SendGrid key
    assert admin.get("/admin/outbox").status_code == 404
    assert "/admin/outbox" not in admin.get("/admin/").text
