"""Addresses and people: normalisation, lookup, suppression and the consent ledger."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import config
from .bulk import one_of
from .config import Settings
from .fields import TAGS_MAX
from .models import ConsentRecord, Subscriber, SubscriberTag, Suppression, SuppressionReason

MAX_EMAIL_LENGTH = 254


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """The normalised address (IDN domains kept in Unicode), or raise InvalidEmail.

    Syntax only: no DNS lookups, so a signup never waits on the network.
    """
    if not isinstance(raw, str):
        raise InvalidEmail("Enter an email address.")
    candidate = raw.strip()
    if not candidate:
        raise InvalidEmail("Enter an email address.")
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"An email address has at most {MAX_EMAIL_LENGTH} characters.")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return str(result.normalized)


def email_key(normalised: str) -> str:
    """The case-insensitive identity of an address (unique in `subscribers.email_key`)."""
    return normalised.lower()


def email_hash(normalised: str, settings: Settings | None = None) -> str:
    """Keyed hash that lets us recognise a suppressed address without storing it."""
    return email_hasher(settings or config.settings())(normalised)


def email_hasher(settings: Settings) -> Callable[[str], str]:
    """`email_hash` for many addresses (a campaign batch's recheck): the key is set up
    once and its HMAC state copied per address."""
    keyed = hmac.new(settings.suppression_hash_key.encode(), digestmod=hashlib.sha256)

    def hash_of(normalised: str) -> str:
        mac = keyed.copy()
        mac.update(email_key(normalised).encode())
        return mac.hexdigest()

    return hash_of


def find_subscriber(session: Session, normalised: str) -> Subscriber | None:
    return session.scalars(
        select(Subscriber).where(Subscriber.email_key == email_key(normalised))
    ).first()


def is_suppressed(session: Session, normalised: str, *, include_erased: bool = True) -> bool:
    """Whether the address is on the suppression list.

    An `erased` suppression only remembers that a person asked to be forgotten, so an
    import or a staff action cannot silently re-add them. It does not block the person's
    own fresh signup (new consent): the signup path passes `include_erased=False`.
    Bounces, complaints and manual suppressions always block.
    """
    query = select(Suppression.id).where(Suppression.email_hash == email_hash(normalised))
    if not include_erased:
        query = query.where(Suppression.reason != SuppressionReason.erased)
    return session.scalar(query) is not None


def is_erased_or_suppressed(session: Session, normalised: str) -> bool:
    """For imports and staff additions: refuse erased addresses as well as suppressed ones."""
    return is_suppressed(session, normalised, include_erased=True)


def forget_erasure(session: Session, normalised: str) -> bool:
    """Drop the `erased` marker of an address once its owner gave new consent (confirmed)."""
    row = session.scalars(
        select(Suppression).where(
            Suppression.email_hash == email_hash(normalised),
            Suppression.reason == SuppressionReason.erased,
        )
    ).first()
    if row is None:
        return False
    session.delete(row)
    return True


@dataclass(frozen=True)
class Evidence:
    """Where a consent change came from: stored with every ledger record."""

    ip: str = ""
    user_agent: str = ""
    source: str = ""
    endpoint: str = ""
    actor: str = "subscriber"
    consent_text_version: str = ""


def record_consent(
    session: Session,
    subscriber: Subscriber,
    action: str,
    evidence: Evidence,
    *,
    list_id: int | None = None,
    note: str = "",
) -> ConsentRecord:
    record = ConsentRecord(subscriber=subscriber, **consent_fields(action, evidence, list_id, note))
    session.add(record)
    return record


def consent_fields(
    action: str, evidence: Evidence, list_id: int | None = None, note: str = ""
) -> dict[str, Any]:
    """The columns of one ledger record (bulk inserts of imports use this directly)."""
    return {
        "list_id": list_id,
        "action": action,
        "ip": evidence.ip[:45],
        "user_agent": evidence.user_agent[:400],
        "source": evidence.source[:500],
        "endpoint": evidence.endpoint[:100],
        "actor": evidence.actor[:200],
        "consent_text_version": evidence.consent_text_version[:40],
        "note": note,
    }


def consent_record_data(record: ConsentRecord) -> dict[str, Any]:
    """One ledger record as plain data (the API's detail view and the GDPR export)."""
    return {
        "action": record.action,
        "list": record.mailing_list.slug if record.mailing_list else None,
        "at": record.at,
        "ip": record.ip,
        "user_agent": record.user_agent,
        "source": record.source,
        "endpoint": record.endpoint,
        "consent_text_version": record.consent_text_version,
        "actor": record.actor,
        "note": record.note,
    }


def suppressed_hashes(session: Session, hashes: Collection[str]) -> dict[str, SuppressionReason]:
    """Bulk `is_erased_or_suppressed`: which of these `email_hash` values are suppressed
    (erased included), with the reason."""
    if not hashes:
        return {}
    # One parameter for thousands of hashes on PostgreSQL (see service.bulk).
    condition = one_of(session, Suppression.email_hash, list(hashes))
    rows = session.execute(select(Suppression.email_hash, Suppression.reason).where(condition))
    return {digest: reason for digest, reason in rows}


@dataclass(frozen=True)
class Details:
    """The profile details a merge looks at (an import row, a staff addition)."""

    first_name: str = ""
    last_name: str = ""
    postal_code: str = ""
    state: str = ""
    county: str = ""
    timezone: str = ""


def merge_details(known: Details, given: Details) -> Details:
    """A known person's details once new ones are merged in (imports, staff additions):
    blanks are filled, a detail they have is never overwritten, except that a postal code
    filled in brings its state, county and time zone along."""
    postal, state, county, zone = known.postal_code, known.state, known.county, known.timezone
    if not postal and given.postal_code:
        postal, state = given.postal_code, given.state or state
        county, zone = given.county, given.timezone
    return Details(
        first_name=known.first_name or given.first_name,
        last_name=known.last_name or given.last_name,
        postal_code=postal, state=state or given.state, county=county, timezone=zone,
    )


def merge_attributes(known: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Attributes once a merge added the ones a person lacks (none is overwritten)."""
    missing = {k: v for k, v in given.items() if k not in known}
    return {**known, **missing} if missing else known


def tags_of(session: Session, subscriber_ids: Collection[int]) -> dict[int, list[str]]:
    """Each subscriber's tags, sorted, in one query ({} entries for those with none)."""
    tags: dict[int, list[str]] = {sid: [] for sid in subscriber_ids}
    if not tags:
        return tags
    rows = session.execute(
        select(SubscriberTag.subscriber_id, SubscriberTag.tag)
        .where(SubscriberTag.subscriber_id.in_(list(tags)))
        .order_by(SubscriberTag.subscriber_id, SubscriberTag.tag)
    )
    for sid, tag in rows:
        tags[sid].append(tag)
    return tags


class TooManyTags(ValueError):
    pass


def add_tags(subscriber: Subscriber, tags: Collection[str]) -> list[str]:
    """Add normalised `tags` the person lacks (none is removed); the added ones, sorted.
    Raises TooManyTags when the person would carry more than TAGS_MAX."""
    have = {row.tag for row in subscriber.tag_rows}
    new = sorted(set(tags) - have)
    if len(have) + len(new) > TAGS_MAX:
        raise TooManyTags(f"At most {TAGS_MAX} tags per person.")
    for tag in new:
        subscriber.tag_rows.append(SubscriberTag(tag=tag))
    return new


def set_tags(subscriber: Subscriber, tags: Collection[str]) -> tuple[list[str], list[str]]:
    """Make the person's tags exactly `tags` (normalised, at most TAGS_MAX);
    (added, removed), each sorted."""
    wanted = set(tags)
    have = {row.tag for row in subscriber.tag_rows}
    subscriber.tag_rows[:] = [row for row in subscriber.tag_rows if row.tag in wanted]
    for tag in sorted(wanted - have):
        subscriber.tag_rows.append(SubscriberTag(tag=tag))
    return sorted(wanted - have), sorted(have - wanted)
