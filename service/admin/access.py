"""Staff sign-in, sign-out, password change and the role check of every admin view."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from .. import db
from ..audit import record
from ..auth import authenticate_password, hash_password, verify_password
from ..extensions import limiter, login_manager
from ..models import Role, User
from .blueprint import bp

F = TypeVar("F", bound=Callable[..., Any])

LOGIN_RATE_LIMIT = "10/minute"
MIN_PASSWORD_LENGTH = 10
PUBLIC_ENDPOINTS = {"admin.login"}


@bp.before_request
def _require_login() -> Any:
    """Every admin page except the login form needs a signed-in, active staff user."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if session.get(PASSWORD_MARK) != password_mark(staff_user()):
        # The password changed since this session signed in (elsewhere): sign it out.
        logout_user()
        return login_manager.unauthorized()
    return None


PASSWORD_MARK = "_admin_pw"  # noqa: S105 - a session key name, not a password


def password_mark(user: User) -> str:
    """A keyed fingerprint of the password hash, kept in the session at sign-in.

    Changing the password changes the mark, which signs out every other session. The
    session cookie is signed but readable, so it carries an HMAC, not the hash itself.
    """
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


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


def audit(action: str, object_type: str, object_id: object = "", **detail: Any) -> None:
    """Append to the audit log (committed with the change it describes)."""
    record(db.session(), actor=actor(), action=action, object_type=object_type,
           object_id=object_id, detail=detail)


def _safe_next(target: str | None) -> str:
    """Only ever redirect back into the admin (no open redirect through ?next=)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin"):
            return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_RATE_LIMIT, methods=["POST"])
def login() -> Any:
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    error = ""
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()[:254]
        password = request.form.get("password", "")
        user = authenticate_password(db.session(), email, password)
        if user is not None:
            login_user(user)
            session[PASSWORD_MARK] = password_mark(user)
            audit("user.login", "user", user.id)
            db.session().commit()
            return redirect(_safe_next(request.args.get("next")))
        error = "Wrong address or password."
    status = 401 if error else 200
    return render_template("admin/login.html", error=error, email=email), status


@bp.post("/logout")
@staff_required(Role.viewer)
def logout() -> Any:
    logout_user()
    session.pop(PASSWORD_MARK, None)
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
            session[PASSWORD_MARK] = password_mark(user)  # this session stays signed in
            audit("password.change", "user", user.id)
            db.session().commit()
            flash("Your password has been changed.")
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", errors=errors), 422 if errors else 200
