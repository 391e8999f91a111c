"""The profile fields people and staff type in: one set of rules, one cleaner.

Signup, the preference centre, staff edits and the CSV import all store the same names,
postal codes and languages, so they must accept and refuse the same text. The rules
live here; each caller turns a `FieldError` into its own error collection (a form's
messages, a line of the import report).
"""

from __future__ import annotations

import enum
import re
from typing import TypeGuard

from .i18n import LOCALES

NAME_MAX = 100
POSTAL_MAX = 10
# Line breaks and other C0 controls (and DEL) are refused, never silently dropped: a
# name that carries them was not typed by a person and could split a mail header or a
# CSV export line.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Unicode's Bidi_Control characters (ALM, LRM, RLM, the embeddings and overrides, the
# isolates) are refused too: they make a name read backwards or hide what follows
# (`Eve\u202egro.live` shows as "Eveevil.org") in pages, mails and exports. Right-to-left
# scripts need none of them.
BIDI_CONTROL = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Refusal(enum.StrEnum):
    """Why a value was refused (the import report words each one its own way)."""

    not_text = "not_text"
    control = "control"
    bidi = "bidi"
    too_long = "too_long"
    not_locale = "not_locale"


class FieldError(ValueError):
    """`field` cannot be stored as given; `message` says why, in the words forms show."""

    def __init__(self, field: str, refusal: Refusal, limit: int = 0) -> None:
        self.field = field
        self.refusal = refusal
        self.limit = limit
        self.message = _message(refusal, limit)
        super().__init__(f"{field}: {self.message}")


def _message(refusal: Refusal, limit: int) -> str:
    if refusal is Refusal.not_text:
        return "Must be text."
    if refusal is Refusal.control:
        return "Must not contain line breaks or control characters."
    if refusal is Refusal.bidi:
        return "Must not contain characters that change the direction of text."
    if refusal is Refusal.too_long:
        return f"At most {limit} characters."
    return f"Must be one of: {', '.join(LOCALES)}."


def clean_text(value: object, field: str, max_len: int) -> str:
    """`value` with its whitespace collapsed; "" for nothing given.

    Raises FieldError for a value that is not text, holds a control character or a
    bidi control, or is longer than `max_len` once cleaned. Plain printable ASCII (most
    of a large import) skips both searches.
    """
    if not isinstance(value, str):
        if value is None:
            return ""
        raise FieldError(field, Refusal.not_text)
    if not value:
        return ""
    if not (value.isascii() and value.isprintable()):
        if CONTROL.search(value):
            raise FieldError(field, Refusal.control)
        if BIDI_CONTROL.search(value):
            raise FieldError(field, Refusal.bidi)
    cleaned = " ".join(value.split())
    if len(cleaned) > max_len:
        raise FieldError(field, Refusal.too_long, max_len)
    return cleaned


def is_locale(value: object) -> TypeGuard[str]:
    """Whether pages and mails exist in this language."""
    return value in LOCALES


def check_locale(value: object, field: str) -> str:
    """`value` if it is a language we have (see `is_locale`), else FieldError."""
    if not is_locale(value):
        raise FieldError(field, Refusal.not_locale)
    return value
