"""The preference centre: lists on/off, language, name, postal code, stop everything.

A preferences link is only ever mailed to the address itself, so using it proves control
of the mailbox: switching a public list on from here confirms it directly (no second
opt-in round), and the consent record says so (`endpoint=preferences`).

`request_link` mails a fresh link to an address typed into `GET /preferences`. Unknown,
suppressed and throttled addresses get the same answer as known ones; the mails count
against the same per-address throttle as confirmation mails (`may_send_confirmation`),
so the form cannot be used to flood a mailbox.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import config
from ..db import utcnow
from ..fields import NAME_MAX, POSTAL_MAX, FieldError, check_locale
from ..lists import public_lists
from ..models import ConfirmationMail, MailingList, Subscriber, Subscription, SubscriptionStatus
from ..postal import normalise_postal_code, place_columns
from ..queue import MAIL_RETRY, enqueue_after_commit
from ..subscribers import (
    Evidence,
    InvalidEmail,
    find_subscriber,
    is_suppressed,
    normalise_email,
    record_consent,
)
from .signup import ValidationErrors, may_send_confirmation
from .unsubscribe import unsubscribe


class LinkOutcome(enum.StrEnum):
    queued = "queued"
    unknown = "unknown"
    suppressed = "suppressed"
    throttled = "throttled"
    invalid = "invalid"


@dataclass
class PreferencesForm:
    lists: list[str]
    lang: str = "en"
    first_name: str = ""
    last_name: str = ""
    postal_code: str = ""
    stop_all: bool = False


@dataclass
class Validated:
    lists: list[MailingList]
    lang: str
    first_name: str
    last_name: str
    postal_code: str
    stop_all: bool


@dataclass
class Applied:
    subscribed: list[MailingList] = field(default_factory=list)
    unsubscribed: list[MailingList] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.subscribed or self.unsubscribed or self.profile)


def current_state(session: Session, subscriber: Subscriber) -> dict[int, SubscriptionStatus]:
    return {
        sub.list_id: sub.status
        for sub in session.scalars(
            select(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
    }


def validate(session: Session, form: PreferencesForm) -> Validated:
    errors = ValidationErrors()
    first = errors.clean_text("first_name", form.first_name, NAME_MAX)
    last = errors.clean_text("last_name", form.last_name, NAME_MAX)
    postal = normalise_postal_code(errors.clean_text("postal_code", form.postal_code, POSTAL_MAX))
    lang = ""
    try:
        lang = check_locale(form.lang, "lang")
    except FieldError as exc:
        errors.refused(exc)
    by_slug = {ml.slug: ml for ml in public_lists(session)}
    unknown = [s for s in form.lists if s not in by_slug]
    if unknown:
        errors.add("lists", f"Unknown list: {', '.join(u[:64] for u in unknown[:5])}.")
    if errors.errors:
        raise errors
    chosen = [by_slug[s] for s in dict.fromkeys(form.lists)]
    return Validated(chosen, lang, first, last, postal, form.stop_all)


def apply(
    session: Session, subscriber: Subscriber, data: Validated, evidence: Evidence
) -> Applied:
    """Make the subscriber's lists and profile match the form. The caller commits."""
    applied = Applied()
    if data.stop_all:
        change = unsubscribe(session, subscriber, None, evidence, "preferences")
        applied.unsubscribed = change.changed
        return applied

    wanted = {ml.id for ml in data.lists}
    existing = {
        sub.list_id: sub
        for sub in session.scalars(
            select(Subscription)
            .where(Subscription.subscriber_id == subscriber.id)
            .with_for_update(of=Subscription)
        )
    }
    now = utcnow()
    stop: list[int] = []
    for ml in public_lists(session):
        sub = existing.get(ml.id)
        active = sub is not None and sub.status != SubscriptionStatus.unsubscribed
        if ml.id in wanted and not (sub is not None and sub.status == SubscriptionStatus.confirmed):
            if sub is None:
                sub = Subscription(subscriber_id=subscriber.id, list_id=ml.id)
                session.add(sub)
            sub.status = SubscriptionStatus.confirmed
            sub.confirmed_at = now
            sub.unsubscribed_at = None
            record_consent(
                session, subscriber, "subscribe", evidence, list_id=ml.id,
                note="preference centre (mailbox proven by the signed link)",
            )
            applied.subscribed.append(ml)
        elif ml.id not in wanted and active:
            stop.append(ml.id)
    if stop:
        # One call (and one `subscriber.unsubscribed` event) for every list unticked.
        applied.unsubscribed.extend(
            unsubscribe(session, subscriber, stop, evidence, "preferences").changed
        )

    profile = {
        "first_name": data.first_name,
        "last_name": data.last_name,
        "postal_code": data.postal_code,
        "locale": data.lang,
    }
    for name, value in profile.items():
        if getattr(subscriber, name) != value:
            setattr(subscriber, name, value)
            applied.profile.append(name)
    if "postal_code" in applied.profile:
        for name, value in place_columns(data.postal_code).items():
            setattr(subscriber, name, value)
    if applied.profile:
        # The ledger names the fields, not their values: it outlives profile edits.
        record_consent(
            session, subscriber, "profile_update", evidence, note=", ".join(applied.profile)
        )
    return applied


def request_link(session: Session, raw_email: str) -> LinkOutcome:
    """Queue a mail with a fresh preferences link. The caller commits; the outcome is
    for metrics only and must never be shown to the person asking."""
    settings = config.settings()
    try:
        email = normalise_email(raw_email)
    except InvalidEmail:
        return LinkOutcome.invalid
    subscriber = find_subscriber(session, email)
    if subscriber is None:
        return LinkOutcome.unknown
    if is_suppressed(session, email):
        return LinkOutcome.suppressed
    # No list ids: preference-link mails have their own interval (key "") and share the
    # daily per-address cap with confirmation mails.
    if not may_send_confirmation(session, subscriber.id, [], settings):
        return LinkOutcome.throttled
    mail = ConfirmationMail(
        subscriber_id=subscriber.id, list_ids="", result="queued preferences link"
    )
    session.add(mail)
    session.flush()
    enqueue_after_commit(
        session, "service.jobs.subscriptions.send_preferences_link", subscriber.id, mail.id,
        retry_intervals=MAIL_RETRY,
    )
    return LinkOutcome.queued
