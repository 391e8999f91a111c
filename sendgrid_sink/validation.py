"""Validation of `POST /v3/mail/send` bodies: SendGrid's limits and its error envelope.

Every problem of a request is reported at once, with the field SendGrid names; the
per-recipient ones (`personalizations.{i}.{to|cc|bcc}.{j}.email`) are what a sender relies
on to drop one recipient and resend the others.
"""

from __future__ import annotations

import json
import re
import time
from typing import cast

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD = 72 * 3600

# One "@", a non-empty local part, a dotted domain, no whitespace. Length is checked apart.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def error_body(*errors: tuple[str, str | None]) -> bytes:
    """SendGrid's error envelope: `{"errors": [{"message", "field", "help"}]}`."""
    items = [{"message": message, "field": field, "help": None} for message, field in errors]
    return json.dumps({"errors": items}).encode()


def is_valid_email(value: object) -> bool:
    """The sink's (deliberately simple) idea of a syntactically valid address."""
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL.fullmatch(value))


class _Problems:
    """Collects every problem of one request, SendGrid lists them all at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []

    def add(self, message: str, field: str | None) -> None:
        self.items.append((message, field))

    def string_map(self, value: object, prefix: str, name: str) -> dict[str, str]:
        """Checks that `value` is an object of strings; returns it ({} when unusable).

        The field is `prefix + name` ("headers", "personalizations.3.headers"): built only
        for an error, which keeps 1000 personalizations cheap to validate.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(f"The {name} parameter must be an object.", prefix + name)
            return {}
        if not all(isinstance(v, str) for v in value.values()):
            self.add(f"All {name} values must be strings.", prefix + name)
            return {}
        return value

    def limited_map(self, value: object, prefix: str, name: str, *, serialized: bool) -> None:
        """A string map whose size (of its JSON form when `serialized`) is under 10,000 bytes."""
        mapping = self.string_map(value, prefix, name)
        if mapping and _exceeds(mapping, MAX_ARGS_BYTES, serialized=serialized):
            self.add(f"The {name} may not exceed {MAX_ARGS_BYTES} bytes.", prefix + name)

    def send_at(self, value: object, prefix: str, now: float) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            self.add("The send_at parameter must be a unix timestamp (integer).",
                     prefix + "send_at")
        elif value > now + MAX_SEND_AT_AHEAD:
            self.add("The send_at parameter may not be more than 72 hours in the future.",
                     prefix + "send_at")


def _exceeds(mapping: dict[str, str], limit: int, *, serialized: bool) -> bool:
    """Whether the UTF-8 size of the keys and values (or of the JSON) reaches `limit`.

    A character takes at most 6 bytes even as a JSON escape, so the exact measure is only
    taken for maps that could be near the limit.
    """
    chars = sum(map(len, mapping)) + sum(map(len, mapping.values()))
    if chars * 6 + len(mapping) * 8 + 2 < limit:
        return False
    if serialized:
        size = len(json.dumps(mapping, ensure_ascii=False).encode())
    else:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())
    return size >= limit


def validate_mail(body: object, now: float | None = None) -> list[tuple[str, str | None]]:
    """Every problem SendGrid would report for this `/v3/mail/send` body, as (message, field).

    Per-recipient problems name `personalizations.{i}.{to|cc|bcc}.{j}.email`; the sending
    code uses that index to drop one recipient and resend the others.
    """
    now = time.time() if now is None else now
    problems = _Problems()
    if not isinstance(body, dict):
        problems.add("The request body must be a JSON object.", None)
        return problems.items

    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        problems.add(
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    elif not is_valid_email(sender["email"]):
        problems.add("The from email does not contain a valid address.", "from.email")
    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict)
                                     and is_valid_email(reply_to.get("email"))):
        problems.add("The reply_to email does not contain a valid address.", "reply_to.email")

    has_template = isinstance(body.get("template_id"), str)
    _validate_content(body.get("content"), problems, required=not has_template)

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.add(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        problems.add(
            f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per request.",
            "personalizations",
        )

    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        problems.add("The subject must be a string.", "subject")
    subject_everywhere = bool(personalizations) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in personalizations
    )
    if not subject and not subject_everywhere and not has_template:
        problems.add(
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject defined.",
            "subject",
        )

    seen: set[str] = set()
    recipients = 0
    for i, personalization in enumerate(personalizations):
        recipients += _validate_personalization(i, personalization, problems, seen, now)
    if recipients > MAX_RECIPIENTS:
        problems.add(
            f"The total number of recipients (to, cc and bcc over all personalizations) "
            f"must not exceed {MAX_RECIPIENTS}.",
            "personalizations",
        )

    problems.string_map(body.get("headers"), "", "headers")
    problems.limited_map(body.get("custom_args"), "", "custom_args", serialized=True)
    problems.send_at(body.get("send_at"), "", now)
    categories = body.get("categories")
    if categories is not None and not (
        isinstance(categories, list)
        and len(categories) <= MAX_CATEGORIES
        and all(isinstance(c, str) and c for c in categories)
    ):
        problems.add(
            f"The categories parameter must be a list of at most {MAX_CATEGORIES} strings.",
            "categories",
        )
    return problems.items


def _validate_content(content: object, problems: _Problems, *, required: bool) -> None:
    if content is None and not required:
        return
    if not isinstance(content, list) or not content:
        problems.add(
            "Unless a valid template_id is provided, the content parameter is required. "
            "There must be at least one defined content block.",
            "content",
        )
        return
    types: list[str] = []
    for k, item in enumerate(content):
        if not isinstance(item, dict):
            problems.add("Each content block must be an object with type and value.",
                         f"content.{k}")
            continue
        kind, value = item.get("type"), item.get("value")
        if not isinstance(kind, str) or not kind:
            problems.add("The content type must be a non-empty string.", f"content.{k}.type")
        else:
            types.append(kind)
        if not isinstance(value, str) or not value:
            problems.add("The content value must be a string at least one character in length.",
                         f"content.{k}.value")
    if types.count("text/plain") > 1 or types.count("text/html") > 1:
        problems.add("If present, text/plain and text/html may only be provided once.",
                     "content")
    elif ("text/plain" in types and "text/html" in types
          and types.index("text/plain") > types.index("text/html")):
        problems.add("If present, text/plain must be first, followed by text/html.", "content")


def _validate_personalization(i: int, p: object, problems: _Problems, seen: set[str],
                              now: float) -> int:
    """Validates personalization `i`; returns its number of recipients."""
    prefix = f"personalizations.{i}."
    if not isinstance(p, dict):
        problems.add("Each personalization must be an object.", prefix[:-1])
        return 0
    to = p.get("to")
    if not isinstance(to, list) or not to:
        problems.add(
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address.",
            prefix + "to",
        )
    recipients = 0
    for kind in ("to", "cc", "bcc"):
        group = p.get(kind)
        if group is None or (kind == "to" and not isinstance(group, list)):
            continue
        if not isinstance(group, list):
            problems.add(f"The {kind} parameter must be an array.", prefix + kind)
            continue
        recipients += len(group)
        for j, recipient in enumerate(group):
            email = recipient.get("email") if isinstance(recipient, dict) else None
            if not is_valid_email(email):
                problems.add("Does not contain a valid address.", f"{prefix}{kind}.{j}.email")
                continue
            key = cast(str, email).lower()
            if key in seen:
                problems.add(
                    f"Duplicate email addresses are not allowed in one request: "
                    f"{email} appears more than once.",
                    f"{prefix}{kind}.{j}.email",
                )
            seen.add(key)
            name = recipient.get("name")
            if name is not None and (not isinstance(name, str) or ";" in name or "," in name):
                problems.add(
                    "The recipient name must be a string and may not contain ; or , characters.",
                    f"{prefix}{kind}.{j}.name",
                )
    subject = p.get("subject")
    if subject is not None and not isinstance(subject, str):
        problems.add("The subject must be a string.", prefix + "subject")
    problems.limited_map(p.get("substitutions"), prefix, "substitutions", serialized=False)
    problems.string_map(p.get("headers"), prefix, "headers")
    problems.limited_map(p.get("custom_args"), prefix, "custom_args", serialized=True)
    problems.send_at(p.get("send_at"), prefix, now)
    return recipients

