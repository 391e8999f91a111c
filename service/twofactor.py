"""Staff two-factor authentication: TOTP (RFC 6238, `pyotp`) and one-time recovery codes.

The TOTP secret is stored encrypted (Fernet, with a key derived from each signing key, so a
`SECRET_KEY` rotation keeps it readable while the old key is a fallback; a successful code
re-encrypts it under the current key). It is shown only while enrolling. A code is accepted
once: the time step it matched is recorded, and an equal or earlier step is refused, so a
code seen over a shoulder or replayed within its 90 s window does not sign anyone in.
Recovery codes are stored as SHA-256 hashes (they are 50 random bits each) and each works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .config import settings
from .db import utcnow
from .models import StaffRecoveryCode, User

RECOVERY_CODE_COUNT = 10
# A code of the previous or next 30 s step is accepted too (clocks drift, people type slowly).
VALID_WINDOW = 1
TOTP_CODE = re.compile(r"[0-9]{6}")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_LENGTH = 10


def _fernet() -> MultiFernet:
    keys = []
    for signing_key in reversed(settings().signing_keys):  # the current key first
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"actionlist staff totp secret").derive(signing_key.encode())
        keys.append(Fernet(base64.urlsafe_b64encode(derived)))
    return MultiFernet(keys)


def _secret(user: User) -> str:
    if not user.totp_secret:
        raise ValueError("This user has no TOTP secret.")
    try:
        return _fernet().decrypt(user.totp_secret.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "The TOTP secret cannot be decrypted (was SECRET_KEY replaced without keeping "
            "the old one in SECRET_KEY_FALLBACKS?): enrol this user again."
        ) from exc


def enabled(user: User) -> bool:
    return user.totp_enabled_at is not None and bool(user.totp_secret)


def provisioning_uri(user: User, secret: str) -> str:
    """The `otpauth://` URI an authenticator app reads (from the QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=settings().org_name)


def begin_enrolment(user: User) -> str:
    """Give `user` a new, not yet confirmed secret (2FA stays off until a code confirms it)."""
    if enabled(user):
        raise ValueError("Two-factor authentication is already on for this user.")
    secret = pyotp.random_base32()
    user.totp_secret = _fernet().encrypt(secret.encode()).decode()
    user.totp_enabled_at = None
    user.totp_last_step = None
    return secret


def pending_secret(user: User) -> str | None:
    """The secret of an enrolment that is under way (scanned, not yet confirmed)."""
    if enabled(user) or not user.totp_secret:
        return None
    try:
        return _secret(user)
    except ValueError:
        return None


def confirm_enrolment(session: Session, user: User, code: str) -> list[str] | None:
    """Turn 2FA on when `code` matches the pending secret; returns the recovery codes."""
    if enabled(user) or not user.totp_secret or not _accept_totp(session, user, code):
        return None
    user.totp_enabled_at = utcnow()
    return replace_recovery_codes(session, user)


def enable_now(session: Session, user: User) -> tuple[str, list[str]]:
    """The command line's enrolment: a new secret, on at once (replacing any old one).

    Returns the `otpauth://` URI and the recovery codes, both to be shown this once.
    """
    user.totp_enabled_at = None
    secret = begin_enrolment(user)
    user.totp_enabled_at = utcnow()
    return provisioning_uri(user, secret), replace_recovery_codes(session, user)


def replace_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(StaffRecoveryCode(user_id=user.id, code_hash=_recovery_digest(code))
                    for code in codes)
    return codes


def unused_recovery_codes(session: Session, user: User) -> int:
    return len(session.scalars(select(StaffRecoveryCode.id).where(
        StaffRecoveryCode.user_id == user.id, StaffRecoveryCode.used_at.is_(None))).all())


def verify_second_factor(session: Session, user: User, code: str) -> bool:
    """A current TOTP code not used before, or an unused recovery code (then used up)."""
    code = code.strip()[:64]
    if not enabled(user):
        return False
    if TOTP_CODE.fullmatch(code.replace(" ", "")):
        return _accept_totp(session, user, code.replace(" ", ""))
    return _use_recovery_code(session, user, code)


def _accept_totp(session: Session, user: User, code: str) -> bool:
    if not TOTP_CODE.fullmatch(code):
        return False
    try:
        secret = _secret(user)
    except ValueError:
        return False
    totp = pyotp.TOTP(secret)
    now_step = int(time.time()) // totp.interval
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            # Claim the step atomically: of two requests with the same code, one wins.
            claimed = session.execute(
                update(User)
                .where(User.id == user.id,
                       or_(User.totp_last_step.is_(None), User.totp_last_step < step))
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                return False
            user.totp_last_step = step
            if user.totp_secret:  # re-encrypted under the current SECRET_KEY
                user.totp_secret = _fernet().rotate(user.totp_secret.encode()).decode()
            return True
    return False


def _use_recovery_code(session: Session, user: User, code: str) -> bool:
    digest = _recovery_digest(code)
    used = session.execute(
        update(StaffRecoveryCode)
        .where(StaffRecoveryCode.user_id == user.id, StaffRecoveryCode.code_hash == digest,
               StaffRecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return getattr(used, "rowcount", 0) == 1


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _recovery_digest(code: str) -> str:
    normal = re.sub(r"[\s-]", "", code).lower()
    return hashlib.sha256(normal.encode()).hexdigest()
