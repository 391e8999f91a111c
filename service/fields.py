"""The profile fields people and staff type in: one set of rules, one cleaner.

Signup, the preference centre, staff edits and the CSV import all store the same names,
postal codes and languages, so they must accept and refuse the same text. The rules
live here; each caller turns a `FieldError` into its own error collection (a form's
messages, a line of the import report).
"""

from __future__ import annotations

import enum
import re
from typing import Any, TypeGuard

from marshmallow import fields as schema_fields

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
    empty = "empty"
    too_many = "too_many"
    separator = "separator"
    not_object = "not_object"
    not_list = "not_list"


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
    if refusal is Refusal.empty:
        return "Must not be empty."
    if refusal is Refusal.too_many:
        return f"At most {limit} entries."
    if refusal is Refusal.separator:
        return "Must not contain a comma or a semicolon."
    if refusal is Refusal.not_object:
        return "Must be an object of text values."
    if refusal is Refusal.not_list:
        return "Must be a list of text."
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


# Tags: short labels staff put on people ("volunteer", "donor-2024"). Stored trimmed, with
# inner whitespace collapsed and lower-cased, so "Volunteer " and "volunteer" are one
# tag. A comma or semicolon separates tags in an import's `tags` column, so no tag holds
# one.
TAG_MAX = 64
TAGS_MAX = 50
_TAG_SEPARATOR = re.compile(r"[,;]")

# Attributes: what an import's other columns (and the API) keep about a person, as text,
# e.g. {"cd": "NY-10"}. A key is text by the same rules as a name (no control or
# direction characters), 1-100 characters as typed (an import's header names them); a
# value at most 1,000 characters; at most 50 per person.
ATTRIBUTE_KEY_MAX = 100
ATTRIBUTE_MAX = 1000
ATTRIBUTES_MAX = 50


def clean_tag(value: object, field: str) -> str:
    """One tag, normalised (see TAG_MAX), or FieldError."""
    tag = clean_text(value, field, TAG_MAX).lower()
    if not tag:
        raise FieldError(field, Refusal.empty)
    if _TAG_SEPARATOR.search(tag):
        raise FieldError(field, Refusal.separator)
    if len(tag) > TAG_MAX:  # lower-casing can lengthen a few letters ("İ")
        raise FieldError(field, Refusal.too_long, TAG_MAX)
    return tag


def clean_tags(values: object, field: str = "tags") -> list[str]:
    """A list of tags, normalised, duplicates dropped, sorted; FieldError naming the entry
    (`tags.2`) for a bad one, or `tags` for too many or not a list."""
    if not isinstance(values, list):
        raise FieldError(field, Refusal.not_list)
    if len(values) > TAGS_MAX:
        raise FieldError(field, Refusal.too_many, TAGS_MAX)
    tags = {clean_tag(value, f"{field}.{index}") for index, value in enumerate(values)}
    return sorted(tags)


def split_tags(cell: str, field: str = "tags") -> list[str]:
    """The tags of an import cell, separated by `,` or `;` (empty parts are skipped)."""
    parts = [part for part in _TAG_SEPARATOR.split(cell) if part.strip()]
    return clean_tags(parts, field)


def clean_attribute_key(value: object, field: str) -> str:
    key = clean_text(value, field, ATTRIBUTE_KEY_MAX)
    if not key:
        raise FieldError(field, Refusal.empty)
    return key


def clean_attributes(values: object, field: str = "attributes", *,
                     removals: bool = False) -> dict[str, str | None]:
    """Attributes as given by staff: {key: text}, each cleaned like a name; with
    `removals`, a None value (JSON null) or "" stays None and means "remove this key";
    without, such a key is left out.

    FieldError names the key (`attributes.cd`) for a bad value, `attributes` for a bad
    key, a value that is not an object, or more than ATTRIBUTES_MAX keys.
    """
    if not isinstance(values, dict):
        raise FieldError(field, Refusal.not_object)
    if len(values) > ATTRIBUTES_MAX:
        raise FieldError(field, Refusal.too_many, ATTRIBUTES_MAX)
    cleaned: dict[str, str | None] = {}
    for raw_key, raw_value in values.items():
        key = clean_attribute_key(raw_key, field)
        name = f"{field}.{key}"
        if raw_value is not None and not isinstance(raw_value, str):
            raise FieldError(name, Refusal.not_text)
        value = clean_text(raw_value, name, ATTRIBUTE_MAX)
        if value:
            cleaned[key] = value
        elif removals:  # null or "": the key goes
            cleaned[key] = None
    return cleaned


class StrictBoolean(schema_fields.Boolean):
    """A JSON boolean for the API's schemas: true or false, nothing else (not 1, "yes",
    "true" or "on")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value

