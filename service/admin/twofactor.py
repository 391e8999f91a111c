"""Two-factor enrolment of the signed-in staff user: a QR code to scan, a code to confirm,
then recovery codes shown once (`service.twofactor` holds the rules)."""

from __future__ import annotations

from typing import Any

import segno
from flask import flash, g, redirect, render_template, request, url_for
from markupsafe import Markup

from .. import db, twofactor
from ..extensions import limiter
from ..models import Role
from .access import (
    CODE_RATE_LIMIT,
    LOGIN_RATE_LIMIT,
    audit,
    second_factor_account,
    second_factor_failed,
    staff_required,
    staff_user,
)
from .blueprint import bp

NO_STORE = {"Cache-Control": "no-store"}


def qr_svg(uri: str) -> Markup:
    """The URI as an inline SVG QR code (segno; no image leaves the server)."""
    code = segno.make(uri, error="m")
    return Markup(code.svg_inline(scale=5, border=4, title="QR code for your authenticator app"))  # noqa: S704 - segno's own SVG


def _enrol_page(secret: str, error: str = "") -> Any:
    uri = twofactor.provisioning_uri(staff_user(), secret)
    status = 422 if error else 200
    return render_template("admin/two_factor_enrol.html", qr=qr_svg(uri), secret=secret,
                           error=error), status, NO_STORE


@bp.get("/2fa")
@staff_required(Role.viewer)
def two_factor() -> Any:
    user = staff_user()
    return render_template(
        "admin/two_factor.html", enabled=twofactor.enabled(user),
        recovery_left=twofactor.unused_recovery_codes(db.session(), user),
    )


@bp.post("/2fa/setup")
@staff_required(Role.viewer)
def two_factor_setup() -> Any:
    user = staff_user()
    if twofactor.enabled(user):
        flash("Two-factor authentication is already on. An admin can reset it with "
              "`actionlist users 2fa`.")
        return redirect(url_for("admin.two_factor"))
    secret = twofactor.begin_enrolment(user)
    db.session().commit()
    return _enrol_page(secret)


@bp.post("/2fa/confirm")
@limiter.limit(LOGIN_RATE_LIMIT)
@limiter.limit(CODE_RATE_LIMIT, key_func=second_factor_account, deduct_when=second_factor_failed)
@staff_required(Role.viewer)
def two_factor_confirm() -> Any:
    session = db.session()
    user = staff_user()
    secret = twofactor.pending_secret(user)
    if secret is None:
        flash("Start the set-up again: there is no enrolment under way.")
        return redirect(url_for("admin.two_factor"))
    codes = twofactor.confirm_enrolment(session, user, request.form.get("code", ""))
    if codes is None:
        session.rollback()
        g.second_factor_failed = True
        return _enrol_page(secret, "That code is not right (or was used already): enter the "
                                   "6 digits your app shows now.")
    audit("user.2fa_enable", "user", user.id)
    session.commit()
    return render_template("admin/two_factor_codes.html", codes=codes), 200, NO_STORE
