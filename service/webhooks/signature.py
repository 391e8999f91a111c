"""Verifying SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + exact raw body."""

from __future__ import annotations

import binascii
import logging
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from flask import Flask, current_app
from sendgrid.helpers.eventwebhook import EventWebhook

from .. import config
from ..config import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid's clock and ours may disagree a little; a timestamp further ahead is refused.
MAX_FUTURE_SKEW_SECONDS = 300


class SignatureRejected(Exception):
    """The request is not provably from SendGrid (or no longer fresh)."""


@dataclass
class Verifier:
    """The configured public key, converted once per app (not per request)."""

    helper: EventWebhook
    key: Any  # EllipticCurvePublicKey
    max_age_seconds: int

    def verify(self, raw_body: bytes, signature: str, timestamp: str, now: float | None = None
               ) -> None:
        """Raise SignatureRejected unless the signature and timestamp are good."""
        if not signature or not timestamp:
            raise SignatureRejected("signature headers missing")
        try:
            sent_at = int(timestamp)
        except ValueError as exc:
            raise SignatureRejected("timestamp is not a number") from exc
        current = time.time() if now is None else now
        if current - sent_at > self.max_age_seconds:
            raise SignatureRejected("timestamp too old")
        if sent_at - current > MAX_FUTURE_SKEW_SECONDS:
            raise SignatureRejected("timestamp in the future")
        try:
            # The helper takes text and re-encodes it as UTF-8: lossless for valid UTF-8.
            payload = raw_body.decode("utf-8")
            valid = self.helper.verify_signature(payload, signature, timestamp, self.key)
        except (UnicodeDecodeError, binascii.Error, ValueError, TypeError, InvalidSignature) as exc:
            raise SignatureRejected(f"malformed signature: {type(exc).__name__}") from exc
        if not valid:
            raise SignatureRejected("signature does not match")


def build_verifier(settings: Settings) -> Verifier | None:
    """A verifier for the configured key, or None when none (or an unusable one) is set."""
    if not settings.sendgrid_webhook_public_key:
        return None
    helper = EventWebhook()
    try:
        key = helper.convert_public_key_to_ecdsa(settings.sendgrid_webhook_public_key.strip())
    except (ValueError, TypeError) as exc:
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not a usable public key: %s", exc)
        return None
    return Verifier(helper=helper, key=key, max_age_seconds=settings.webhook_max_age_seconds)


def init_app(app: Flask) -> None:
    app.extensions["webhook_verifier"] = build_verifier(config.settings(app))


def verifier() -> Verifier | None:
    v: Verifier | None = current_app.extensions.get("webhook_verifier")
    return v
