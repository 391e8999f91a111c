"""Signup and confirmation: the double opt-in path.

The outcome of a signup is never shown to the person asking: new, pending, confirmed,
unsubscribed and suppressed addresses all get the same answer (enumeration, list
bombing). The outcome only feeds metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import config
from ..config import Settings
from ..db import is_pg, utcnow
from ..fields import NAME_MAX, POSTAL_MAX, FieldError, check_locale, clean_text
from ..lists import ListRef, public_list_refs
from ..models import (
    ConfirmationMail,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from ..observability import metrics
from ..outbound import SUBSCRIBER_CONFIRMED, emit_for_subscriber
from ..postal import normalise_postal_code, place_columns
from ..queue import MAIL_RETRY, enqueue_after_commit
from ..subscribers import (
    Evidence,
    consent_fields,
    email_hash,
    email_key,
    find_subscriber,
    forget_erasure,
    is_suppressed,
    normalise_email,
    record_consent,
)
from . import confirmations

SOURCE_MAX = 500


# The job that sends a list's welcome mail once (`campaigns.welcome.send_welcome`).
SEND_WELCOME = "service.jobs.welcome.send_welcome"


class Outcome(enum.StrEnum):
    created = "created"
    pending = "pending"  # a confirmation mail is (re)queued
    throttled = "throttled"  # would have mailed, but the per-address throttle said no
    unchanged = "unchanged"  # already confirmed everywhere asked
    suppressed = "suppressed"
    honeypot = "honeypot"


@dataclass
class SignupForm:
    email: str
    lists: list[str]
    first_name: str = ""
    last_name: str = ""
    postal_code: str = ""
    lang: str = "en"
    source: str = ""


@dataclass
class Validated:
    email: str
    lists: list[ListRef]
    first_name: str
    last_name: str
    postal_code: str
    lang: str
    source: str


@dataclass
class ValidationErrors(Exception):
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def refused(self, error: FieldError) -> None:
        self.add(error.field, error.message)

    def clean_text(self, name: str, value: object, limit: int) -> str:
        """`value` by the shared field rules, or "" with the refusal recorded here."""
        try:
            return clean_text(value, name, limit)
        except FieldError as exc:
            self.refused(exc)
            return ""


def validate(session: Session, form: SignupForm) -> Validated:
    """Check every field; raise ValidationErrors naming each bad one."""
    errors = ValidationErrors()
    email = ""
    try:
        email = normalise_email(form.email)
    except ValueError as exc:
        errors.add("email", str(exc))
    first = errors.clean_text("first_name", form.first_name, NAME_MAX)
    last = errors.clean_text("last_name", form.last_name, NAME_MAX)
    postal = normalise_postal_code(errors.clean_text("postal_code", form.postal_code, POSTAL_MAX))
    source = errors.clean_text("source", form.source, SOURCE_MAX)
    lang = ""
    try:
        lang = check_locale(form.lang or "en", "lang")
    except FieldError as exc:
        errors.refused(exc)
    slugs = form.lists
    if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
        errors.add("lists", "Must be a list of list names.")
        slugs = []
    slugs = [s.strip() for s in slugs if s.strip()]
    mailing_lists: list[ListRef] = []
    if not slugs:
        errors.add("lists", "Choose at least one list.")
    elif len(slugs) > 20:
        errors.add("lists", "Too many lists.")
    else:
        found = public_list_refs(session, slugs)
        unknown = [s for s in dict.fromkeys(slugs) if s not in found]
        if unknown:
            errors.add("lists", f"Unknown list: {', '.join(u[:64] for u in unknown)}.")
        mailing_lists = [found[s] for s in dict.fromkeys(slugs) if s in found]
    if errors.errors:
        raise errors
    return Validated(email, mailing_lists, first, last, postal, lang, source)


def _get_or_create_subscriber(session: Session, data: Validated) -> tuple[Subscriber, bool]:
    subscriber = find_subscriber(session, data.email)
    if subscriber is not None:
        return subscriber, False
    subscriber = Subscriber(
        email=data.email,
        email_key=email_key(data.email),
        first_name=data.first_name,
        last_name=data.last_name,
        postal_code=data.postal_code,
        **place_columns(data.postal_code),
        locale=data.lang,
        attributes={},
    )
    try:
        with session.begin_nested():
            session.add(subscriber)
    except IntegrityError:
        # Another request created the same address a moment ago: use that row.
        existing = find_subscriber(session, data.email)
        if existing is None:
            raise
        return existing, False
    return subscriber, True


def list_key(list_ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(set(list_ids)))


def may_send_confirmation(
    session: Session, subscriber_id: int, list_ids: list[int], settings: Settings,
    *, new_subscriber: bool = False,
) -> bool:
    """Per-address throttle against list bombing.

    At most `confirm_mail_max_per_day` mails per address in 24 hours, and the same lists
    not again within `confirm_mail_min_interval_seconds` (a person who joins another
    list a minute later still gets that list's confirmation). A subscriber created in the
    current transaction (`new_subscriber`) cannot have had a mail yet: no query needed.
    """
    if settings.confirm_mail_max_per_day <= 0:
        return False
    if new_subscriber:
        return True
    since = utcnow() - timedelta(hours=24)
    rows = session.execute(
        select(ConfirmationMail.at, ConfirmationMail.list_ids).where(
            ConfirmationMail.subscriber_id == subscriber_id, ConfirmationMail.at > since
        )
    ).all()
    if len(rows) >= settings.confirm_mail_max_per_day:
        return False
    recent = utcnow() - timedelta(seconds=settings.confirm_mail_min_interval_seconds)
    key = list_key(list_ids)
    return not any(at > recent and lists == key for at, lists in rows)


# PostgreSQL, a new address (most signups): the subscriber, a pending subscription and a
# consent record per list, and the confirmation mail's row, in one statement instead of
# ten through the ORM. An address that exists already (or is being created by a
# concurrent request, which ON CONFLICT waits for) or is suppressed inserts nothing here
# and takes the general path below, which tells the two apart.
_PG_NEW_SIGNUP = text("""
WITH new AS (
    INSERT INTO subscribers (email, email_key, first_name, last_name, postal_code, state,
                             county, timezone, locale, status, attributes, created_at,
                             updated_at)
    SELECT :email, :email_key, :first_name, :last_name, :postal_code, :state, :county,
           :timezone, :locale, 'active', CAST('{}' AS json), :now, :now
    WHERE NOT EXISTS (SELECT 1 FROM suppressions
                      WHERE email_hash = :email_hash AND reason <> 'erased')
    ON CONFLICT (email_key) DO NOTHING
    RETURNING id
), lists AS (
    SELECT l.list_id, l.n FROM unnest(CAST(:list_ids AS integer[])) WITH ORDINALITY
                               AS l(list_id, n)
), subscribed AS (
    INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
    SELECT new.id, lists.list_id, 'pending', :now, :now FROM new, lists
), recorded AS (
    INSERT INTO consent_records (subscriber_id, list_id, action, at, ip, user_agent, source,
                                 endpoint, actor, consent_text_version, note)
    SELECT new.id, lists.list_id, :action, :now, :ip, :user_agent, :source, :endpoint,
           :actor, :consent_text_version, :note
    FROM new, lists ORDER BY lists.n
)
INSERT INTO confirmation_mails (subscriber_id, at, list_ids, result, not_before)
SELECT id, :now, :list_key, 'queued', :now FROM new
RETURNING id""")


def _signup_new_address_pg(session: Session, data: Validated, list_ids: list[int],
                           evidence: Evidence) -> bool:
    """Whether the address was new (and its confirmation mail is queued).

    The statement is a transaction by itself. When the session has not begun one yet (the
    usual case: the public lists came from the per-process copy), it runs in autocommit
    mode, which saves the BEGIN and the COMMIT round trips: two of a signup's five. It is
    still committed durably (`synchronous_commit` as configured) before the answer. When
    it inserts nothing, the session is rolled back (no round trip) so that the general
    path gets a transaction.
    """
    autocommit = not session.in_transaction()
    if autocommit:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = session.execute(_PG_NEW_SIGNUP, {
        "email": data.email, "email_key": email_key(data.email),
        "first_name": data.first_name, "last_name": data.last_name,
        "postal_code": data.postal_code, **place_columns(data.postal_code),
        "locale": data.lang, "now": utcnow(), "list_ids": list_ids,
        "list_key": list_key(list_ids), "email_hash": email_hash(data.email),
        **consent_fields("signup", evidence),
    }).first()
    if row is None:
        if autocommit:
            session.rollback()
        return False
    confirmations.wake(session)  # the statement wrote the row due now
    return True


def signup(session: Session, data: Validated, evidence: Evidence) -> Outcome:
    """Record the signup and queue a confirmation mail (`confirmations`). The caller
    commits."""
    settings = config.settings()
    if is_pg(session) and settings.confirm_mail_max_per_day > 0:
        list_ids = [ml.id for ml in data.lists]
        if _signup_new_address_pg(session, data, list_ids, evidence):
            return Outcome.created
    # An erased address may sign up again: that is new consent (see is_suppressed).
    if is_suppressed(session, data.email, include_erased=False):
        return Outcome.suppressed
    subscriber, created = _get_or_create_subscriber(session, data)
    existing: dict[int, Subscription] = {}
    if not created:
        # An existing person's profile stays as it is: anyone can type an address into a
        # public form, so only the person (through a signed link), staff or an import may
        # change it. (A row inserted by this transaction has no subscriptions yet.)
        existing = {
            s.list_id: s
            for s in session.scalars(
                select(Subscription).where(Subscription.subscriber_id == subscriber.id)
            )
        }
    to_confirm: list[int] = []
    for mailing_list in data.lists:
        sub = existing.get(mailing_list.id)
        if sub is not None and sub.status == SubscriptionStatus.confirmed:
            continue
        if sub is None:
            sub = Subscription(subscriber_id=subscriber.id, list_id=mailing_list.id)
            session.add(sub)
        else:
            sub.status = SubscriptionStatus.pending
        record_consent(session, subscriber, "signup", evidence, list_id=mailing_list.id)
        to_confirm.append(mailing_list.id)
    if not to_confirm:
        return Outcome.unchanged
    if not may_send_confirmation(session, subscriber.id, to_confirm, settings,
                                 new_subscriber=created):
        return Outcome.throttled
    mail = ConfirmationMail(subscriber_id=subscriber.id, list_ids=list_key(to_confirm))
    session.add(mail)
    confirmations.queue(session, mail)
    return Outcome.created if created else Outcome.pending


def submit(session: Session, form: SignupForm, *, honeypot: str,
           evidence: Callable[[str], Evidence]) -> Outcome:
    """A public signup from the form or the JSON API: validate (raises ValidationErrors),
    record and commit. Every outcome looks the same to the person who sent it.

    `evidence(source)` describes the request; it is called after validation, with the
    form's cleaned `source`.
    """
    data = validate(session, form)
    if honeypot:
        metrics().signups.labels(Outcome.honeypot.value).inc()
        return Outcome.honeypot
    outcome = signup(session, data, evidence(data.source))
    session.commit()
    metrics().signups.labels(outcome.value).inc()
    return outcome


@dataclass
class ConfirmResult:
    valid: bool
    confirmed: list[MailingList] = field(default_factory=list)
    already: list[MailingList] = field(default_factory=list)
    locale: str = "en"


def pending_for_token(session: Session, subscriber_id: int, list_ids: list[int]) -> ConfirmResult:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return ConfirmResult(valid=False)
    result = ConfirmResult(valid=True, locale=subscriber.locale)
    for sub in _subscriptions(session, subscriber_id, list_ids, lock=False):
        if sub.status == SubscriptionStatus.pending:
            result.confirmed.append(sub.mailing_list)
        elif sub.status == SubscriptionStatus.confirmed:
            result.already.append(sub.mailing_list)
    return result


def _subscriptions(
    session: Session, subscriber_id: int, list_ids: list[int], *, lock: bool = True
) -> list[Subscription]:
    if not list_ids:
        return []
    query = select(Subscription).where(
        Subscription.subscriber_id == subscriber_id, Subscription.list_id.in_(list_ids)
    )
    return list(session.scalars(query.with_for_update(of=Subscription) if lock else query))


def confirm(
    session: Session, subscriber_id: int, list_ids: list[int], evidence: Evidence
) -> ConfirmResult:
    """Confirm every pending subscription the token names. Idempotent. The caller commits."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return ConfirmResult(valid=False)
    result = ConfirmResult(valid=True, locale=subscriber.locale)
    now = utcnow()
    for sub in _subscriptions(session, subscriber_id, list_ids):
        if sub.status == SubscriptionStatus.pending:
            sub.status = SubscriptionStatus.confirmed
            sub.confirmed_at = now
            record_consent(session, subscriber, "confirm", evidence, list_id=sub.list_id)
            result.confirmed.append(sub.mailing_list)
        elif sub.status == SubscriptionStatus.confirmed:
            result.already.append(sub.mailing_list)
    if result.confirmed:
        # New, confirmed consent supersedes an earlier erasure of this address.
        forget_erasure(session, subscriber.email)
        queue_welcomes(session, subscriber_id, result.confirmed)
        emit_for_subscriber(session, SUBSCRIBER_CONFIRMED, subscriber, result.confirmed)
    return result


def queue_welcomes(session: Session, subscriber_id: int, lists: list[MailingList]) -> int:
    """Queue the welcome of each of `lists` (just confirmed through the public link) that
    has one, once the caller commits; the job sends each at most once per person and list.
    Returns how many were queued."""
    queued = 0
    for ml in lists:
        if ml.welcome_for("en") is None and ml.welcome_for("es") is None:
            continue
        enqueue_after_commit(session, SEND_WELCOME, subscriber_id, ml.id,
                             job_id=f"al-welcome-{subscriber_id}-{ml.id}",
                             retry_intervals=MAIL_RETRY)
        queued += 1
    return queued
