"""Endpoint signing secrets, stored encrypted (Fernet, with a key derived from each signing
key, so a SECRET_KEY rotation keeps them readable while the old key is a fallback)."""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import config
from ..models import OutgoingEndpoint


def _fernet() -> MultiFernet:
    keys = []
    for signing_key in reversed(config.settings().signing_keys):  # the current key first
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"actionlist outgoing webhook secret").derive(signing_key.encode())
        keys.append(Fernet(base64.urlsafe_b64encode(derived)))
    return MultiFernet(keys)


def new_secret() -> tuple[str, str]:
    """A fresh secret and its encrypted form (what the database keeps)."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    return secret, _fernet().encrypt(secret.encode()).decode()


def secret_of(endpoint: OutgoingEndpoint) -> str:
    """The signing secret (decrypted); ValueError if SECRET_KEY changed without fallback."""
    try:
        return _fernet().decrypt(endpoint.secret.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("The endpoint's secret cannot be decrypted (was SECRET_KEY "
                         "replaced without keeping the old one as a fallback?)") from exc
