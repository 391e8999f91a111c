"""Changes staff make to subscribers: edit, unsubscribe, add by hand (with consent), add
through the API (pending with a confirmation mail, or confirmed with a consent note), edit
tags and attributes, erase.

The API, the admin and the CLI call these same functions; each takes the staff member's
`Evidence` (its `actor` is "staff:<email>" or "token:<name>") for the consent ledger and
the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..audit import record
from ..db import utcnow
from ..fields import (
    ATTRIBUTES_MAX,
    NAME_MAX,
    POSTAL_MAX,
    FieldError,
    check_locale,
    clean_attributes,
    clean_tags,
    clean_text,
    is_locale,
)
from ..lists import ListRef, lists_by_slugs
from ..models import MailingList, Subscriber, Subscription, SubscriptionStatus
from ..outbound import SUBSCRIBER_UNSUBSCRIBED, emit_for_subscriber
from ..postal import normalise_postal_code, place_columns
from ..subscribers import (
    Details,
    Evidence,
    InvalidEmail,
    add_tags,
    email_key,
    find_subscriber,
    is_erased_or_suppressed,
    is_suppressed,
    merge_attributes,
    merge_details,
    normalise_email,
    record_consent,
    set_tags,
)
from . import gdpr, signup

NOTE_MAX = 2000


@dataclass
class FormErrors(Exception):
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    first_name: str
    last_name: str
    postal_code: str
    locale: str


def _text(errors: dict[str, str], name: str, value: str, limit: int) -> str:
    """`value` by the shared field rules, or "" with the refusal recorded in `errors`."""
    try:
        return clean_text(value, name, limit)
    except FieldError as exc:
        errors[exc.field] = exc.message
        return ""


def read_profile(form: dict[str, str]) -> Profile:
    errors: dict[str, str] = {}
    first = _text(errors, "first_name", form.get("first_name", ""), NAME_MAX)
    last = _text(errors, "last_name", form.get("last_name", ""), NAME_MAX)
    postal = normalise_postal_code(
        _text(errors, "postal_code", form.get("postal_code", ""), POSTAL_MAX)
    )
    locale = form.get("locale", "en")
    if not is_locale(locale):
        errors["locale"] = "Choose English or Spanish."  # this form offers a choice of two
    if errors:
        raise FormErrors(errors)
    return Profile(first, last, postal, locale)


def update_profile(subscriber: Subscriber, profile: Profile) -> dict[str, list[str]]:
    """Apply the profile; the state follows the postal code. Returns what changed."""
    changes: dict[str, list[str]] = {}
    wanted = {
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "postal_code": profile.postal_code,
        **place_columns(profile.postal_code),
        "locale": profile.locale,
    }
    for name, value in wanted.items():
        old = getattr(subscriber, name)
        if old != value:
            changes[name] = [old, value]
            setattr(subscriber, name, value)
    return changes


def unsubscribe(
    session: Session, subscriber: Subscriber, list_id: int, evidence: Evidence
) -> bool:
    """Unsubscribe from one list, recorded in the consent ledger. False if not subscribed."""
    for sub in subscriber.subscriptions:
        if sub.list_id == list_id and sub.status != SubscriptionStatus.unsubscribed:
            sub.status = SubscriptionStatus.unsubscribed
            sub.unsubscribed_at = utcnow()
            record_consent(session, subscriber, "unsubscribe", evidence, list_id=list_id)
            emit_for_subscriber(session, SUBSCRIBER_UNSUBSCRIBED, subscriber,
                                [sub.mailing_list], channel="staff")
            return True
    return False


def add_by_hand(
    session: Session,
    form: dict[str, str],
    lists: list[MailingList],
    evidence: Evidence,
) -> Subscriber:
    """A confirmed subscription entered by staff, with the consent note they give.

    Suppressed addresses (bounced, complained, erased) are refused: staff must not
    silently re-add someone who asked to be forgotten.
    """
    errors: dict[str, str] = {}
    email = ""
    try:
        email = normalise_email(form.get("email", ""))
    except InvalidEmail as exc:
        errors["email"] = str(exc)
    try:
        profile = read_profile(form)
    except FormErrors as exc:
        errors.update(exc.errors)
        profile = Profile("", "", "", "en")
    note = _note(errors, form.get("consent_note", ""))
    if not lists:
        errors["lists"] = "Choose at least one list."
    if email and not errors.get("email") and is_suppressed(session, email):
        errors["email"] = "This address is on the suppression list and cannot be added."
    if errors:
        raise FormErrors(errors)

    subscriber, _ = confirm_by_staff(session, email, profile, lists, note, evidence)
    return subscriber


def _note(errors: dict[str, str], value: object) -> str:
    """A consent note: required, at most NOTE_MAX characters; line breaks and tabs are
    kept (it may be a quoted message), other control and direction characters refused."""
    if not isinstance(value, str):
        errors["consent_note"] = "Must be text."
        return ""
    note = value.strip()
    if not note:
        errors["consent_note"] = "Say how this person gave consent."
    elif len(note) > NOTE_MAX:
        errors["consent_note"] = f"At most {NOTE_MAX} characters."
    else:
        try:
            clean_text(note.replace("\n", " ").replace("\r", " ").replace("\t", " "),
                       "consent_note", NOTE_MAX)
        except FieldError as exc:
            errors["consent_note"] = exc.message
    return note


def confirm_by_staff(
    session: Session, email: str, profile: Profile, lists: list[MailingList], note: str,
    evidence: Evidence,
) -> tuple[Subscriber, bool]:
    """Confirmed subscriptions to `lists` that staff vouch for with `note`, one consent
    record per list that changes; (subscriber, whether it is new). A new address gets
    `profile`; a known one keeps its own (the caller merges). Checked input only."""
    subscriber = find_subscriber(session, email)
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(
            email=email, email_key=email_key(email), attributes={},
            first_name=profile.first_name, last_name=profile.last_name,
            postal_code=profile.postal_code, **place_columns(profile.postal_code),
            locale=profile.locale,
        )
        session.add(subscriber)
        session.flush()
    now = utcnow()
    existing = {sub.list_id: sub for sub in subscriber.subscriptions}
    for ml in lists:
        sub = existing.get(ml.id)
        if sub is None:
            sub = Subscription(subscriber=subscriber, list_id=ml.id)
            session.add(sub)
        if sub.status == SubscriptionStatus.confirmed:
            continue
        sub.status = SubscriptionStatus.confirmed
        sub.confirmed_at = now
        sub.unsubscribed_at = None
        record_consent(session, subscriber, "staff", evidence, list_id=ml.id, note=note)
    return subscriber, created


class Unwelcome(Exception):
    """The address is suppressed or was erased: staff may not add it (nothing stored)."""


class ConfirmedNeedsNote(Exception):
    pass


@dataclass
class Addition:
    """A person staff add through the API (`POST /api/v1/subscribers`), as given."""

    email: object
    lists: object = field(default_factory=list)
    first_name: object = ""
    last_name: object = ""
    postal_code: object = ""
    locale: object = None
    attributes: object = field(default_factory=dict)
    tags: object = field(default_factory=list)
    confirmed: bool = False
    consent_note: object = ""


@dataclass
class Added:
    subscriber: Subscriber
    created: bool
    # "queued", "throttled" (the per-address throttle said no), or "" (none was needed:
    # confirmed by staff, or already confirmed on every list named)
    confirmation_mail: str = ""


def _validate_addition(session: Session, data: Addition
                       ) -> tuple[str, Profile, dict[str, str], list[str], list[MailingList],
                                  str]:
    errors: dict[str, str] = {}
    email = ""
    try:
        email = normalise_email(data.email)  # type: ignore[arg-type]
    except InvalidEmail as exc:
        errors["email"] = str(exc)
    first = _text(errors, "first_name", data.first_name, NAME_MAX)  # type: ignore[arg-type]
    last = _text(errors, "last_name", data.last_name, NAME_MAX)  # type: ignore[arg-type]
    postal = normalise_postal_code(
        _text(errors, "postal_code", data.postal_code, POSTAL_MAX))  # type: ignore[arg-type]
    locale = "en"
    if data.locale is not None:
        try:
            locale = check_locale(data.locale, "locale")
        except FieldError as exc:
            errors[exc.field] = exc.message
    attributes: dict[str, str] = {}
    try:
        attributes = {k: v for k, v in clean_attributes(data.attributes).items()
                      if v is not None}
    except FieldError as exc:
        errors[exc.field] = exc.message
    tags: list[str] = []
    try:
        tags = clean_tags(data.tags)
    except FieldError as exc:
        errors[exc.field] = exc.message
    lists: list[MailingList] = []
    slugs = data.lists
    if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
        errors["lists"] = "Must be a list of list names."
    elif not slugs:
        errors["lists"] = "Choose at least one list."
    elif len(slugs) > 20:
        errors["lists"] = "Too many lists."
    else:
        wanted = list(dict.fromkeys(slugs))
        lists = lists_by_slugs(session, wanted)
        unknown = sorted(set(wanted) - {ml.slug for ml in lists})
        if unknown:
            errors["lists"] = f"Unknown list: {', '.join(u[:64] for u in unknown[:5])}."
    note = ""
    if data.confirmed:
        note = _note(errors, data.consent_note)
    if errors:
        raise FormErrors(errors)
    return email, Profile(first, last, postal, locale), attributes, tags, lists, note


def add_subscriber(session: Session, data: Addition, evidence: Evidence) -> Added:
    """Add (or merge into) a person for staff. The caller commits.

    Without `confirmed` it is a signup (`signup.signup`: pending subscriptions, a
    confirmation mail under the same per-address throttle); with it, staff vouch for
    consent with a note (`confirm_by_staff`). A known address is merged like an import
    row: blanks filled, attributes it lacks added, tags added. A suppressed or erased
    address raises Unwelcome before anything is written; bad input FormErrors.
    """
    email, profile, attributes, tags, lists, note = _validate_addition(session, data)
    if is_erased_or_suppressed(session, email):
        raise Unwelcome("This address is suppressed or was erased: it cannot be added.")
    mail = ""
    if data.confirmed:
        subscriber, created = confirm_by_staff(session, email, profile, lists, note, evidence)
    else:
        outcome = signup.signup(session, signup.Validated(
            email, [ListRef(ml.id, ml.slug) for ml in lists], profile.first_name,
            profile.last_name, profile.postal_code, profile.locale, evidence.source,
        ), evidence)
        if outcome == signup.Outcome.suppressed:  # suppressed since the check above
            raise Unwelcome("This address is suppressed or was erased: it cannot be added.")
        found = find_subscriber(session, email)
        assert found is not None
        subscriber, created = found, outcome == signup.Outcome.created
        mail = {signup.Outcome.created: "queued", signup.Outcome.pending: "queued",
                signup.Outcome.throttled: "throttled"}.get(outcome, "")
    changes = _merge_into(subscriber, profile, attributes, tags)
    record(session, actor=evidence.actor, action="subscriber.add", object_type="subscriber",
           object_id=subscriber.id,
           detail={"lists": [ml.slug for ml in lists], "confirmed": data.confirmed,
                   "created": created, **({"changes": changes} if changes else {})})
    return Added(subscriber, created, mail)


def _merge_into(subscriber: Subscriber, profile: Profile, attributes: dict[str, str],
                tags: list[str]) -> dict[str, Any]:
    """The import's merge rules for a known person; what changed (names, keys, tags)."""
    changes: dict[str, Any] = {}
    before = Details(subscriber.first_name, subscriber.last_name, subscriber.postal_code,
                     subscriber.state, subscriber.county, subscriber.timezone)
    place = place_columns(profile.postal_code)
    after = merge_details(before, Details(profile.first_name, profile.last_name,
                                          profile.postal_code, place["state"],
                                          place["county"], place["timezone"]))
    for name in ("first_name", "last_name", "postal_code", "state", "county", "timezone"):
        value = getattr(after, name)
        if getattr(subscriber, name) != value:
            changes[name] = [getattr(subscriber, name), value]
            setattr(subscriber, name, value)
    current = dict(subscriber.attributes or {})
    merged = merge_attributes(current, attributes)
    if merged is not current:
        if len(merged) > ATTRIBUTES_MAX:
            raise FormErrors({"attributes": f"At most {ATTRIBUTES_MAX} entries."})
        changes["attributes"] = sorted(set(merged) - set(current))
        subscriber.attributes = merged
    if tags:
        try:
            added = add_tags(subscriber, tags)
        except ValueError as exc:
            raise FormErrors({"tags": str(exc)}) from None
        if added:
            changes["tags"] = added
    return changes


# What `edit_subscriber` accepts; every one optional.
EDITABLE = ("first_name", "last_name", "postal_code", "locale", "attributes", "tags")


def edit_subscriber(session: Session, subscriber: Subscriber, patch: dict[str, Any],
                    actor: str) -> dict[str, Any]:
    """Staff edit (`PATCH /api/v1/subscribers/<id>`, the admin's tags and attributes):
    any of EDITABLE; `attributes` are merged (a None or "" value removes the key),
    `tags` replace the person's tags. Validates everything first (FormErrors naming each
    bad field, nothing changed), then applies and writes an audit record of what changed
    (attribute keys and tags, not attribute values). The caller commits."""
    errors: dict[str, str] = {}
    unknown = sorted(set(patch) - set(EDITABLE))
    if unknown:
        errors[unknown[0][:64]] = "Unknown field."
    texts = {"first_name": NAME_MAX, "last_name": NAME_MAX, "postal_code": POSTAL_MAX}
    profile = {name: getattr(subscriber, name)
               for name in ("first_name", "last_name", "postal_code", "locale")}
    for name, limit in texts.items():
        if name in patch:
            profile[name] = _text(errors, name, patch[name], limit)
    profile["postal_code"] = normalise_postal_code(profile["postal_code"])
    if "locale" in patch:
        try:
            profile["locale"] = check_locale(patch["locale"], "locale")
        except FieldError as exc:
            errors[exc.field] = exc.message
    attributes: dict[str, str | None] = {}
    tags: list[str] | None = None
    try:
        if "attributes" in patch:
            attributes = clean_attributes(patch["attributes"], removals=True)
    except FieldError as exc:
        errors[exc.field] = exc.message
    try:
        if "tags" in patch:
            tags = clean_tags(patch["tags"])
    except FieldError as exc:
        errors[exc.field] = exc.message
    current = dict(subscriber.attributes or {})
    merged = {k: v for k, v in {**current, **attributes}.items() if v is not None}
    if len(merged) > ATTRIBUTES_MAX and "attributes" not in errors:
        errors["attributes"] = f"At most {ATTRIBUTES_MAX} entries."
    if errors:
        raise FormErrors(errors)

    changes: dict[str, Any] = {}
    if any(name in patch for name in ("first_name", "last_name", "postal_code", "locale")):
        changes.update(update_profile(subscriber, Profile(**profile)))
    if merged != current:
        changes["attributes"] = {
            "set": sorted(k for k in merged if current.get(k) != merged[k]),
            "removed": sorted(set(current) - set(merged)),
        }
        subscriber.attributes = merged
    if tags is not None:
        added, removed = set_tags(subscriber, tags)
        if added or removed:
            changes["tags"] = {"added": added, "removed": removed}
    if changes:
        record(session, actor=actor, action="subscriber.edit", object_type="subscriber",
               object_id=subscriber.id, detail={"changes": changes})
    return changes


def erase_subscriber(session: Session, subscriber: Subscriber, evidence: Evidence) -> None:
    """Erase a person on staff's word (the GDPR erasure, `gdpr.erase`). The caller commits."""
    gdpr.erase(session, subscriber, evidence)
