"""ECDSA P-256 keys and the signature of Event Webhook posts.

SendGrid signs `timestamp + raw body` with ECDSA-SHA256 and publishes the public key as
base64 DER SubjectPublicKeyInfo; the receiving application verifies with that key.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (the curve of SendGrid's Event Webhook signatures)."""
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(pem: bytes | str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem,
                                             password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("the Event Webhook key must be an ECDSA P-256 private key")
    return key


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_or_create_key_file(path: str | os.PathLike[str]) -> bytes:
    """The PEM in `path`, created (mode 0600) if missing so the public key survives restarts."""
    file = Path(path)
    if file.exists():
        return file.read_bytes()
    pem = private_key_pem(new_private_key())
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return pem


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """Base64 DER SubjectPublicKeyInfo, the form of SendGrid's verification key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign_payload(key: ec.EllipticCurvePrivateKey, timestamp: str, payload: bytes) -> str:
    """The `X-Twilio-Email-Event-Webhook-Signature` value: base64 DER ECDSA-SHA256 over
    timestamp + raw body."""
    signature = key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()



def signature_headers(key: ec.EllipticCurvePrivateKey, payload: bytes,
                      timestamp: str | int | None = None) -> dict[str, str]:
    """The signature and timestamp headers of an Event Webhook post of `payload` (the
    timestamp defaults to now, in whole seconds)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {SIGNATURE_HEADER: sign_payload(key, stamp, payload), TIMESTAMP_HEADER: stamp}
