"""SendGrid Event Webhook requests made in the tests: a signing key pair and the events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sendgrid_sink.signing import public_key_b64, signature_headers
from tests.factories import Sent

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

URL = "/webhooks/sendgrid"


@dataclass
class Signer:
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.private_key)

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        return {"Content-Type": "application/json",
                **signature_headers(self.private_key, body, timestamp)}


_counter = iter(range(1, 10**9))


def event(name: str, sent: Sent | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    """One SendGrid event as the webhook posts it (custom_args are top-level strings)."""
    n = next(_counter)
    data: dict[str, Any] = {
        "event": name,
        "email": sent.emails[index] if sent else f"stranger{n}@example.org",
        "timestamp": 1_790_000_000 + n,  # distinct per event, like real ones
        "sg_event_id": f"evt-{n}",
        "sg_message_id": f"msg-{index}.filter0001",
    }
    if sent is not None:
        data["campaign_id"] = str(sent.campaign_id)
        data["subscriber_id"] = str(sent.subscriber_ids[index])
    data.update(extra)
    return data


def json_body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode() + b"\r\n"
