"""Staff sign-in, sign-out, password change and the role check of every admin view."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from .. import db, twofactor
from ..audit import record
from ..auth import authenticate_password, end_sessions, hash_password, verify_password
from ..config import settings
from ..extensions import limiter, login_manager
from ..models import Role, User
from .blueprint import bp

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

LOGIN_RATE_LIMIT = "10/minute"
# Wrong two-factor codes, per account whatever the IP (counted only after the right
# password): at most ~7,300 guesses a year against a 1-in-333,333 chance each.
CODE_RATE_LIMIT = "5/15 minutes;20/day"
MIN_PASSWORD_LENGTH = 10
PUBLIC_ENDPOINTS = {"admin.login"}
ENROL_FIRST = "Set up two-factor authentication first: it is required for all staff."
# With STAFF_REQUIRE_2FA, all a signed-in user without two-factor authentication may reach.
ENROLMENT_ENDPOINTS = {
    "admin.two_factor", "admin.two_factor_setup", "admin.two_factor_confirm", "admin.logout",
}


@bp.before_request
def _require_login() -> Any:
    """Every admin page except the login form needs a signed-in, active staff user."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        # No session, or one that sign-out, deactivation or a password change has ended
        # (the user loader checks the session token): see `service.auth.load_user`.
        return login_manager.unauthorized()
    if must_enrol(staff_user()) and request.endpoint not in ENROLMENT_ENDPOINTS:
        flash(ENROL_FIRST)
        return redirect(url_for("admin.two_factor"))
    return None


def must_enrol(user: User) -> bool:
    """STAFF_REQUIRE_2FA is on and this user has no second factor yet."""
    return settings().staff_require_2fa and not twofactor.enabled(user)


def second_factor_account() -> str:
    """Rate-limit key of two-factor codes: the account, not the IP."""
    if request.endpoint == "admin.login":
        email = request.form.get("email", "").strip().lower()[:254]
    else:
        email = getattr(current_user, "email", "")
    return f"2fa:{email}"


def second_factor_failed(_response: Any) -> bool:
    """Count an attempt against CODE_RATE_LIMIT only when the password was right but the
    code was not (a stranger cannot lock staff out without their password)."""
    return bool(g.get("second_factor_failed"))


def staff_user() -> User:
    user: User = current_user._get_current_object()
    return user


def actor() -> str:
    """How staff actions are recorded in the consent ledger and the audit log."""
    return f"staff:{staff_user().email}"


def staff_required(role: Role = Role.viewer) -> Callable[[F], F]:
    """The view needs a signed-in staff user with at least `role` (else login or 403)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not staff_user().role.allows(role):
                abort(403, description=f"This needs the {role.value} role.")
            g.actor = actor()
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def can(role: str) -> bool:
    """Templates: show a button only to those whose POST would be accepted."""
    return bool(current_user.is_authenticated and staff_user().role.allows(Role(role)))


@bp.app_context_processor
def _admin_helpers() -> dict[str, Any]:
    return {"can": can}


def found(row: R | None) -> R:
    """The row a page is about, or the 404 page when there is none."""
    if row is None:
        abort(404)
    return row


def found_by_id(model: type[R], ident: int, *options: Any) -> R:
    """The row of `model` with this id, loaded with `options`, or the 404 page."""
    return found(db.session().scalars(select(model).filter_by(id=ident).options(*options)).first())


def audit(action: str, object_type: str, object_id: object = "", **detail: Any) -> None:
    """Append to the audit log (committed with the change it describes)."""
    record(db.session(), actor=actor(), action=action, object_type=object_type,
           object_id=object_id, detail=detail)


def _safe_next(target: str | None) -> str:
    """Only ever redirect back into the admin (no open redirect through ?next=); never
    with whitespace or control characters, which `urlsplit` would silently drop."""
    if target and target.isprintable() and not any(c.isspace() for c in target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin"):
            return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_RATE_LIMIT, methods=["POST"])
@limiter.limit(CODE_RATE_LIMIT, methods=["POST"], key_func=second_factor_account,
               deduct_when=second_factor_failed)
def login() -> Any:
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    error = ""
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()[:254]
        password = request.form.get("password", "")
        user = authenticate_password(db.session(), email, password)
        if user is None:
            error = "Wrong address or password."
        elif twofactor.enabled(user) and not twofactor.verify_second_factor(
            db.session(), user, request.form.get("code", "")
        ):
            db.session().rollback()
            g.second_factor_failed = True
            error = ("Enter the 6-digit code from your authenticator app (or a recovery code)."
                     if not request.form.get("code", "").strip()
                     else "That authentication code is wrong or was used already.")
        else:
            login_user(user)
            audit("user.login", "user", user.id)
            db.session().commit()
            if must_enrol(user):
                flash(ENROL_FIRST)
                return redirect(url_for("admin.two_factor"))
            return redirect(_safe_next(request.args.get("next")))
    status = 401 if error else 200
    return render_template("admin/login.html", error=error, email=email), status


@bp.post("/logout")
@staff_required(Role.viewer)
def logout() -> Any:
    """Sign out for good: the session token changes, so no copy of the cookie works again.

    That ends this user's other sessions too (other browsers sign in again).
    """
    user = staff_user()
    end_sessions(user)
    audit("user.logout", "user", user.id)
    db.session().commit()
    logout_user()
    return redirect(url_for("admin.login"))


@bp.route("/password", methods=["GET", "POST"])
@staff_required(Role.viewer)
def password() -> Any:
    errors: list[str] = []
    if request.method == "POST":
        user = staff_user()
        current = request.form.get("current_password", "")
        new = request.form.get("new_password", "")
        if not verify_password(user.password_hash, current):
            errors.append("The current password is wrong.")
        if len(new) < MIN_PASSWORD_LENGTH:
            errors.append(f"The new password needs at least {MIN_PASSWORD_LENGTH} characters.")
        if new != request.form.get("confirm_password", ""):
            errors.append("The two new passwords differ.")
        if not errors:
            user.password_hash = hash_password(new)
            end_sessions(user)  # every other session is signed out ...
            login_user(user)  # ... and this one carries the new token
            audit("password.change", "user", user.id)
            db.session().commit()
            flash("Your password has been changed.")
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", errors=errors), 422 if errors else 200
