"""Writing mailing lists: create and edit a list, with its names, descriptions and welcome.

The one implementation behind `POST`/`PATCH /api/v1/lists` and the admin's list form:
both hand `read_list_input` what they were given and get the same refusals
(`ListInputError`, `{field: [message]}`), then `create_list` / `update_list` write it with
an audit record. It lives with the campaigns because a list's welcome mail is a Markdown
template checked and rendered by the campaign renderer (`render`).

Nothing here commits; once the caller commits, this process's cached copy of the public
lists (`lists.forget_public_lists`) is dropped, so a new or renamed list is seen at once.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..fields import BIDI_CONTROL, FieldError, clean_text
from ..i18n import LOCALES
from ..lists import forget_public_lists, list_by_slug
from ..models import MailingList
from .render import template_errors

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SLUG_MAX = 64
NAME_MAX = 200
DESCRIPTION_MAX = 4000
WELCOME_SUBJECT_MAX = 300
WELCOME_BODY_MAX = 100_000
FIELDS = ("slug", "name", "description", "public", "welcome")
# Text with lines (descriptions, welcome bodies) keeps tabs and line breaks.
LINE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ListInputError(ValueError):
    """Input that cannot be stored: `errors` is {field: [message]}; nothing was written."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class SlugTaken(ListInputError):
    """Another list has this slug (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__({"slug": ["Another list already has this slug."]})


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def storable(self, value: object, name: str) -> bool:
        """Refuse text that is not Unicode text at all (a lone surrogate from a `\ud800`
        escape in JSON): PostgreSQL could not store it."""
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                self.add(name, "Must be valid Unicode text.")
                return False
        return True

    def line(self, value: object, name: str, limit: int) -> str | None:
        if not self.storable(value, name):
            return None
        try:
            return clean_text(value, name, limit)
        except FieldError as exc:
            self.add(name, exc.message)
            return None

    def lines(self, value: object, name: str, limit: int) -> str | None:
        """Text that may span lines: control and bidi characters refused, ends trimmed."""
        if value is None:
            return ""
        if not isinstance(value, str):
            self.add(name, "Must be text.")
            return None
        if not self.storable(value, name):
            return None
        if LINE_CONTROL.search(value):
            self.add(name, "Must not contain control characters.")
            return None
        if BIDI_CONTROL.search(value):
            self.add(name, "Must not contain characters that change the direction of text.")
            return None
        value = value.replace("\r\n", "\n").strip()
        if len(value) > limit:
            self.add(name, f"At most {limit} characters.")
            return None
        return value


def _by_language(
    errors: _Errors, value: object, name: str, read: Any
) -> dict[str, str] | None:
    """A string (English) or {"en": …, "es": …}: the languages given, each read by `read`."""
    if isinstance(value, str) or value is None:
        given: dict[str, object] = {"en": value}
        field_of = {"en": name}
    elif isinstance(value, dict):
        unknown = [k for k in value if k not in LOCALES]
        if unknown:
            errors.add(name, f"Languages are {', '.join(LOCALES)}; not {str(unknown[0])[:20]!r}.")
            return None
        given = dict(value)
        field_of = {lang: f"{name}.{lang}" for lang in given}
    else:
        errors.add(name, 'Must be text or {"en": text, "es": text}.')
        return None
    out: dict[str, str] = {}
    for lang, text in given.items():
        cleaned = read(text, field_of[lang])
        if cleaned is None:
            return None
        out[lang] = cleaned
    return out


def _welcome(errors: _Errors, value: object) -> dict[str, dict[str, str] | None] | None:
    """{lang: {"subject", "body"}} or {lang: None} (that language's welcome removed)."""
    if not isinstance(value, dict):
        errors.add("welcome", 'Must be {"en": {"subject", "body"}, "es": {…}}.')
        return None
    out: dict[str, dict[str, str] | None] = {}
    for lang, content in value.items():
        if lang not in LOCALES:
            errors.add("welcome", f"Languages are {', '.join(LOCALES)}; not {str(lang)[:20]!r}.")
            return None
        name = f"welcome.{lang}"
        if content is None:
            out[lang] = None
            continue
        if not isinstance(content, dict):
            errors.add(name, 'Must be {"subject": text, "body": text} or null.')
            continue
        unknown = [k for k in content if k not in ("subject", "body")]
        if unknown:
            errors.add(f"{name}.{str(unknown[0])[:40]}", "Unknown field.")
            continue
        subject = errors.line(content.get("subject"), f"{name}.subject", WELCOME_SUBJECT_MAX)
        body = errors.lines(content.get("body"), f"{name}.body", WELCOME_BODY_MAX)
        if subject is None or body is None:
            continue
        if bool(subject) != bool(body):
            missing = "subject" if not subject else "body"
            errors.add(f"{name}.{missing}", "A welcome needs a subject and a body.")
            continue
        out[lang] = {"subject": subject, "body": body} if subject else None
    return out


def read_list_input(
    session: Session, data: object, current: MailingList | None
) -> dict[str, Any]:
    """Validate a create (`current` None) or a partial edit; return the values to store
    (`slug`, `name_en`, `name_es`, `description_en`, `description_es`, `public`,
    `welcome`: only those given). Raises ListInputError naming every bad field."""
    errors = _Errors()
    if not isinstance(data, dict):
        raise ListInputError({"json": ["Send a JSON object."]})
    for key in data:
        if key not in FIELDS:
            errors.add(str(key)[:64], "Unknown field.")
    out: dict[str, Any] = {}
    if "slug" in data or current is None:
        slug = data.get("slug")
        if not isinstance(slug, str) or not SLUG.match(slug):
            errors.add("slug", "Lower-case letters, digits and dashes, starting with a letter "
                               f"or digit, at most {SLUG_MAX} characters.")
        elif current is not None and slug != current.slug:
            errors.add("slug", "A list's slug cannot change (signup forms name it).")
        elif current is None and list_by_slug(session, slug) is not None:
            raise SlugTaken()
        else:
            out["slug"] = slug
    if "name" in data or current is None:
        names = _by_language(errors, data.get("name"), "name",
                             lambda v, f: errors.line(v, f, NAME_MAX))
        if names is not None:
            english = names.get("en", current.name_en if current else "")
            if not english:
                errors.add("name.en" if isinstance(data.get("name"), dict) else "name",
                           "A list needs an English name.")
            for lang in names:
                out[f"name_{lang}"] = names[lang]
    if "description" in data:
        texts = _by_language(errors, data["description"], "description",
                             lambda v, f: errors.lines(v, f, DESCRIPTION_MAX))
        for lang, text in (texts or {}).items():
            out[f"description_{lang}"] = text
    if "public" in data:
        if not isinstance(data["public"], bool):
            errors.add("public", "Must be true or false.")
        else:
            out["public"] = data["public"]
    if "welcome" in data:
        welcome = _welcome(errors, data["welcome"])
        if welcome is not None and not errors.errors:
            merged = {lang: dict(content) for lang, content in
                      ((current.welcome or {}) if current else {}).items()
                      if lang in LOCALES and isinstance(content, dict)}
            for lang, content in welcome.items():
                if content is None:
                    merged.pop(lang, None)
                else:
                    merged[lang] = content
            problems = template_errors({
                f"welcome.{lang}.{part}": text for lang, content in welcome.items()
                if content for part, text in content.items()})
            for name, message in problems.items():
                errors.add(name, message)
            out["welcome"] = merged
    if errors.errors:
        raise ListInputError(errors.errors)
    return out


def _forget_after_commit(session: Session) -> None:
    event.listen(session, "after_commit", lambda _s: forget_public_lists(), once=True)


def create_list(session: Session, values: dict[str, Any], actor: str) -> MailingList:
    """A new list from `read_list_input`'s values, with its audit record."""
    ml = MailingList(**{"name_es": "", "description_en": "", "description_es": "",
                        "public": True, "welcome": {}, **values})
    try:
        with session.begin_nested():
            session.add(ml)
    except IntegrityError as exc:  # created by another request a moment ago
        raise SlugTaken() from exc
    audit.record(session, actor=actor, action="list.create", object_type="list",
                 object_id=ml.id, detail={"slug": ml.slug, "fields": sorted(values)})
    _forget_after_commit(session)
    return ml


def update_list(session: Session, ml: MailingList, values: dict[str, Any], actor: str) -> None:
    """Apply `read_list_input`'s values to `ml`, with an audit record naming the fields."""
    changed = sorted(k for k, v in values.items() if getattr(ml, k) != v)
    for name, value in values.items():
        setattr(ml, name, value)
    audit.record(session, actor=actor, action="list.edit", object_type="list",
                 object_id=ml.id, detail={"slug": ml.slug, "fields": changed})
    _forget_after_commit(session)


def list_out(ml: MailingList, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A list as the API shows it (names and descriptions like `name` / `name_es`)."""
    return {
        "id": ml.id,
        "slug": ml.slug,
        "name": ml.name_en,
        "name_es": ml.name_es,
        "description": ml.description_en,
        "description_es": ml.description_es,
        "public": ml.public,
        "welcome": {lang: dict(content) for lang, content in (ml.welcome or {}).items()},
        "subscriber_counts": counts or {"pending": 0, "confirmed": 0, "unsubscribed": 0},
    }


__all__ = ["ListInputError", "SlugTaken", "create_list", "list_out", "read_list_input",
           "update_list"]
