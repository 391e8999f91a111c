"""Event Webhook events for an accepted mail, as SendGrid posts them.

Every recipient is `processed` and then `delivered`, or `bounce`d; `open`, `click` and
`spamreport` follow for the configured share of recipients. Custom args are top-level keys.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from .records import content_of, recipients_of, substitute

EVENT_SHARE_KINDS = ("open", "click", "bounce", "spamreport")

_LINK = re.compile(r"""https?://[^\s"'<>]+""")

Event = dict[str, Any]


def build_events(body: Mapping[str, Any], message_id: str, shares: Mapping[str, float],
                 rng: random.Random, now: float | None = None) -> list[Event]:
    """Event Webhook events for an accepted body: processed + delivered per recipient, and
    open/click/bounce/spamreport for the configured share of recipients."""
    timestamp = int(time.time() if now is None else now)
    custom_args = body.get("custom_args") or {}
    categories = body.get("categories")
    html = content_of(body, "text/html") if shares.get("click") else None
    bounce, opened = shares.get("bounce", 0.0), shares.get("open", 0.0)
    clicked, spam = shares.get("click", 0.0), shares.get("spamreport", 0.0)
    events: list[Event] = []
    for i, p in enumerate(body["personalizations"]):
        args = {**custom_args, **(p.get("custom_args") or {})}
        sg_message_id = f"{message_id}.filter0001.{i}.0"
        for recipient in recipients_of(p, ("to", "cc", "bcc")):
            base: Event = {**args, "email": recipient["email"], "timestamp": timestamp,
                           "sg_message_id": sg_message_id}
            if categories:
                base["category"] = categories
            events.append(_event(base, "processed"))
            if bounce and rng.random() < bounce:
                events.append(_event(base, "bounce", type="bounce", status="5.1.1",
                                     reason="550 5.1.1 mailbox does not exist"))
                continue
            events.append(_event(base, "delivered", response="250 OK"))
            if opened and rng.random() < opened:
                events.append(_event(base, "open"))
            if clicked and rng.random() < clicked:
                match = _LINK.search(substitute(html, p.get("substitutions") or {}) or "")
                url = match.group(0) if match else "https://example.org/"
                events.append(_event(base, "click", url=url))
            if spam and rng.random() < spam:
                events.append(_event(base, "spamreport"))
    return events


def _event(base: Event, event: str, **extra: Any) -> Event:
    return {**base, "event": event, "sg_event_id": secrets.token_urlsafe(16), **extra}

