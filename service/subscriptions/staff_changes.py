"""Changes staff make to subscribers: edit, unsubscribe, add by hand (with consent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ..db import utcnow
from ..fields import NAME_MAX, POSTAL_MAX, FieldError, clean_text, is_locale
from ..models import MailingList, Subscriber, Subscription, SubscriptionStatus
from ..outbound import SUBSCRIBER_UNSUBSCRIBED, emit_for_subscriber
from ..postal import normalise_postal_code, state_for
from ..subscribers import (
    Evidence,
    InvalidEmail,
    email_key,
    find_subscriber,
    is_suppressed,
    normalise_email,
    record_consent,
)

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
        "state": state_for(profile.postal_code),
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
    note = form.get("consent_note", "").strip()
    if not note:
        errors["consent_note"] = "Say how this person gave consent."
    elif len(note) > NOTE_MAX:
        errors["consent_note"] = f"At most {NOTE_MAX} characters."
    if not lists:
        errors["lists"] = "Choose at least one list."
    if email and not errors.get("email") and is_suppressed(session, email):
        errors["email"] = "This address is on the suppression list and cannot be added."
    if errors:
        raise FormErrors(errors)

    subscriber = find_subscriber(session, email)
    if subscriber is None:
        subscriber = Subscriber(
            email=email, email_key=email_key(email), attributes={},
            first_name=profile.first_name, last_name=profile.last_name,
            postal_code=profile.postal_code, state=state_for(profile.postal_code),
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
    return subscriber
