"""Every page says where it may be framed and what may run on it (CSP, X-Frame-Options):
the admin and the self-service pages only by the service itself, the hosted signup form
also by FORM_ALLOWED_ORIGINS; inline scripts run only with the response's nonce."""

from __future__ import annotations

import re

import pytest

from service import PROJECT_ROOT
from service.models import Role
from tests import factories
from tests.admin.signin import log_in


def policy(answer) -> dict[str, str]:  # type: ignore[no-untyped-def]
    header = answer.headers.get("Content-Security-Policy", "")
    assert header, answer.request.path
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1]
            for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.parametrize("path", ["/admin/login", "/preferences", "/confirm/x", "/unsubscribe/x",
                                  "/preferences/x", "/healthz", "/api/v1/lists", "/nowhere"])
def test_pages_are_framed_only_by_the_service(client, path):
    answer = client.get(path)
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
    csp = policy(answer)
    assert csp["frame-ancestors"] == "'self'"
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert re.fullmatch(r"'self' 'nonce-[A-Za-z0-9_-]{22,}'", csp["script-src"])
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("method, path, data", [
    ("GET", "/subscribe?lists=newsletter", None),
    ("POST", "/subscribe", {"email": "broken", "lists": "newsletter"}),  # the form again, 422
    ("GET", "/subscribe/thanks", None),
])
def test_the_hosted_form_is_framed_by_the_allowed_origins(client, method, path, data):
    answer = client.open(path, method=method, data=data)
    assert answer.status_code in (200, 422)
    assert "X-Frame-Options" not in answer.headers
    assert policy(answer)["frame-ancestors"] == "'self' http://partner.example"


def test_the_signed_in_admin_and_a_fresh_nonce_per_answer(app, client):
    factories.user("root@example.org", Role.admin)
    log_in(client, "root@example.org")
    nonces = set()
    for _ in range(2):
        answer = client.get("/admin/")
        assert answer.status_code == 200 and answer.headers["X-Frame-Options"] == "SAMEORIGIN"
        nonce = policy(answer)["script-src"].split("'nonce-")[1].rstrip("'")
        scripts = re.findall(r"<script([^>]*)>", answer.text)
        assert scripts and all(f'nonce="{nonce}"' in attrs for attrs in scripts)
        nonces.add(nonce)
    assert len(nonces) == 2


def test_every_inline_script_of_every_template_carries_the_nonce():
    templates = PROJECT_ROOT / "service" / "templates"
    found = 0
    for path in templates.rglob("*.html"):
        for attrs in re.findall(r"<script([^>]*)>", path.read_text(encoding="utf-8")):
            found += 1
            assert 'nonce="{{ csp_nonce() }}"' in attrs or "src=" in attrs, (path, attrs)
        assert not re.search(r"\son[a-z]+=", path.read_text(encoding="utf-8")), path
    assert found >= 5
