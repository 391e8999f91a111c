"""What the sink records of an accepted mail: one record per personalization.

Substitutions are applied the way SendGrid applies them, so a test reads each recipient's
mail as it would have been delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

Record = dict[str, Any]


def substitute(text: str | None, substitutions: Mapping[str, str]) -> str | None:
    """SendGrid's substitutions: a plain string replace of every key by its value."""
    if not text:
        return text
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def content_of(body: Mapping[str, Any], kind: str) -> str | None:
    """The value of the body's first content block of type `kind` ("text/html"), if any."""
    for item in body.get("content") or ():
        if item.get("type") == kind:
            return cast(str, item.get("value"))
    return None


def recipients_of(p: Mapping[str, Any], kinds: Iterable[str] = ("to",)) -> list[dict[str, Any]]:
    """The email and name of every recipient of personalization `p` in `kinds` (to, cc, bcc)."""
    return [{"email": r["email"], "name": r.get("name")} for kind in kinds
            for r in p.get(kind) or ()]


def build_records(body: Mapping[str, Any], message_id: str, received_at: float, *,
                  keep_content: bool = True) -> list[Record]:
    """One record per personalization of an accepted (already validated) body."""
    headers = body.get("headers") or {}
    custom_args = body.get("custom_args") or {}
    records: list[Record] = []
    if not keep_content:
        for p in body["personalizations"]:
            records.append({
                "message_id": message_id,
                "to": recipients_of(p),
                "custom_args": {**custom_args, **(p.get("custom_args") or {})},
                "headers": {**headers, **(p.get("headers") or {})},
            })
        return records
    html, text = content_of(body, "text/html"), content_of(body, "text/plain")
    for p in body["personalizations"]:
        subs = p.get("substitutions") or {}
        records.append({
            "message_id": message_id,
            "received_at": received_at,
            "from": body.get("from"),
            "reply_to": body.get("reply_to"),
            "to": recipients_of(p),
            "subject": substitute(p.get("subject") or body.get("subject"), subs),
            "html": substitute(html, subs),
            "text": substitute(text, subs),
            "headers": {**headers, **(p.get("headers") or {})},
            "custom_args": {**custom_args, **(p.get("custom_args") or {})},
            "categories": body.get("categories") or [],
            "send_at": p.get("send_at", body.get("send_at")),
        })
    return records

