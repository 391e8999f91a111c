"""Staff users and API tokens (admins only)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import db
from ..auth import create_api_token, create_user, end_sessions
from ..db import utcnow
from ..models import ApiToken, Role, User
from .access import MIN_PASSWORD_LENGTH, audit, found, staff_required, staff_user
from .blueprint import bp

ROLES = [r.value for r in Role]


def _users() -> list[User]:
    return list(db.session().scalars(select(User).order_by(User.email)))


def _tokens() -> list[ApiToken]:
    return list(db.session().scalars(select(ApiToken).order_by(ApiToken.id.desc())))


@bp.get("/users")
@staff_required(Role.admin)
def users() -> Any:
    return render_template("admin/users.html", users=_users(), roles=ROLES, errors={}, form={})


@bp.post("/users")
@staff_required(Role.admin)
def user_create() -> Any:
    session = db.session()
    form = request.form.to_dict()
    email = form.get("email", "").strip().lower()
    role = form.get("role", "")
    password = form.get("password", "")
    errors: dict[str, str] = {}
    if "@" not in email or len(email) > 254:
        errors["email"] = "Enter an email address."
    elif session.scalars(select(User).where(User.email == email)).first():
        errors["email"] = "A user with this address exists."
    if role not in ROLES:
        errors["role"] = "Choose a role."
    if len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = f"At least {MIN_PASSWORD_LENGTH} characters."
    if errors:
        return render_template(
            "admin/users.html", users=_users(), roles=ROLES, errors=errors, form=form
        ), 422
    user = create_user(session, email, password, Role(role))
    session.flush()
    audit("user.create", "user", user.id, email=email, role=role)
    session.commit()
    flash(f"Created {role} {email}.")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/active")
@staff_required(Role.admin)
def user_set_active(user_id: int) -> Any:
    session = db.session()
    user = found(session.get(User, user_id))
    active = request.form.get("active") == "1"
    if user.id == staff_user().id and not active:
        flash("You cannot deactivate yourself.")
        return redirect(url_for("admin.users"))
    user.active = active
    if not active:
        end_sessions(user)  # at once, and reactivation does not bring them back
    audit("user.activate" if active else "user.deactivate", "user", user.id, email=user.email)
    session.commit()
    flash(f"{user.email} is now {'active' if active else 'deactivated'}.")
    return redirect(url_for("admin.users"))


@bp.get("/tokens")
@staff_required(Role.admin)
def tokens() -> Any:
    return render_template("admin/tokens.html", tokens=_tokens(), roles=ROLES, secret=None,
                           errors={})


@bp.post("/tokens")
@staff_required(Role.admin)
def token_create() -> Any:
    session = db.session()
    name = request.form.get("name", "").strip()
    role = request.form.get("role", "")
    errors: dict[str, str] = {}
    if not name or len(name) > 100:
        errors["name"] = "Give the token a name (at most 100 characters)."
    if role not in ROLES:
        errors["role"] = "Choose a role."
    if errors:
        return render_template("admin/tokens.html", tokens=_tokens(), roles=ROLES,
                               secret=None, errors=errors), 422
    row, secret = create_api_token(session, name, Role(role))
    session.flush()
    audit("token.create", "api_token", row.id, name=name, role=role)
    session.commit()
    # Rendered directly (not flashed): the secret must never sit in the session cookie.
    response = render_template("admin/tokens.html", tokens=_tokens(), roles=ROLES,
                               secret=secret, created=row, errors={})
    return response, 201, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
@staff_required(Role.admin)
def token_revoke(token_id: int) -> Any:
    session = db.session()
    row = found(session.get(ApiToken, token_id))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit("token.revoke", "api_token", row.id, name=row.name)
        session.commit()
        flash(f"Token {row.name} revoked.")
    return redirect(url_for("admin.tokens"))
