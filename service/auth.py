"""Staff identities: password hashing, API tokens and role checks."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import db
from .db import utcnow
from .models import ApiToken, Role, User, new_session_token

F = TypeVar("F", bound=Callable[..., Any])
_hasher = PasswordHasher()
TOKEN_PREFIX = "al_"  # noqa: S105 - a marker, not a secret


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified when there is no usable account, so that an unknown or deactivated address costs
# exactly as much work as a wrong password and timing tells nothing about accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-constant-work")


def authenticate_password(session: Session, email: str, password: str) -> User | None:
    """The active staff user with this address and password, else None.

    Exactly one argon2 verification happens whatever the outcome: against the dummy hash
    when the address is unknown or its account deactivated.
    """
    user = session.scalars(select(User).where(User.email == email)).first()
    usable = user is not None and user.active
    stored = user.password_hash if usable and user is not None else _DUMMY_HASH
    matches = verify_password(stored, password)
    return user if usable and matches else None


def create_user(session: Session, email: str, password: str, role: Role) -> User:
    if len(password) < 10:
        raise ValueError("Passwords need at least 10 characters.")
    user = User(email=email.strip().lower(), password_hash=hash_password(password), role=role)
    session.add(user)
    return user


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, name: str, role: Role) -> tuple[ApiToken, str]:
    """Store the token's hash and return the token itself (shown once)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=token_digest(secret), prefix=secret[:10], role=role)
    session.add(row)
    return row, secret


def authenticate_bearer() -> ApiToken | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    session = db.session()
    row = session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == token_digest(token.strip()), ApiToken.revoked_at.is_(None)
        )
    ).first()
    if row is not None:
        row.last_used_at = utcnow()
        session.commit()
    return row


def require_role(role: Role) -> Callable[[F], F]:
    """API views: a valid bearer token with at least `role`, else 401/403."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = authenticate_bearer()
            if token is None:
                abort(401, description="A valid API token is required (Authorization: Bearer).")
            if not token.role.allows(role):
                abort(403, description=f"This needs the {role.value} role.")
            g.actor = f"token:{token.name}"
            g.actor_role = token.role
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def end_sessions(user: User) -> None:
    """Sign out every session and remember cookie of `user` (committed by the caller)."""
    user.session_token = new_session_token()


def load_user(session_id: str) -> User | None:
    """Flask-Login's user loader: `User.get_id()` as kept in a session or remember cookie.

    The id names the user and carries their session token; a token that was replaced
    (sign-out, deactivation, password change) no longer loads anyone.
    """
    user_id, _, token = session_id.partition(":")
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 18 and token):
        return None
    user = db.session().get(User, int(user_id))
    if user is None or not user.active:
        return None
    if not hmac.compare_digest(user.session_token.encode(), token.encode()):
        return None
    return user
