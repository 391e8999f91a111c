"""Seeding the database for tests: one small function per kind of row.

Every function writes through the app's session (an app context must be pushed) and
commits unless given `commit=False`. The defaults are what tests assert against (names,
addresses, states): change one and tests elsewhere break.

The two lists the migrations create, `action-alerts` and `newsletter`, always exist;
`new_list` adds others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import select

from service import db
from service.auth import create_api_token, create_user
from service.db import utcnow
from service.models import (
    Campaign,
    CampaignEventStat,
    CampaignKind,
    CampaignLinkStat,
    CampaignStatus,
    ConsentRecord,
    Delivery,
    DeliveryStatus,
    Import,
    ImportStatus,
    MailingList,
    Role,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    User,
)
from service.subscribers import email_hash

if TYPE_CHECKING:
    from sendgrid_sink import SinkServer

# The password of every staff user made here.
PASSWORD = "correct horse battery staple"


Row = TypeVar("Row")


def _stored(row: Row, commit: bool, *, flush: bool = False) -> Row:
    """Add `row` to the session and commit; with `commit=False`, flush only if asked."""
    session = db.session()
    session.add(row)
    if commit:
        session.commit()
    elif flush:
        session.flush()
    return row


# ---------------------------------------------------------------- lists


def mailing_list(slug: str) -> MailingList:
    found = db.session().scalars(select(MailingList).where(MailingList.slug == slug)).one()
    return found


def list_id(slug: str) -> int:
    return int(db.session().scalars(select(MailingList.id).where(MailingList.slug == slug)).one())


def list_ids(*slugs: str) -> list[int]:
    """The ids of these lists, in id order (as signed links carry them)."""
    return [
        ml.id for ml in db.session().scalars(
            select(MailingList).where(MailingList.slug.in_(slugs)).order_by(MailingList.id)
        )
    ]


def new_list(slug: str, name_en: str, *, public: bool = True, commit: bool = True) -> MailingList:
    row = MailingList(slug=slug, name_en=name_en, public=public)
    return _stored(row, commit)


# ---------------------------------------------------------------- subscribers


def subscriber(
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    state: str = "",
    postal_code: str = "",
    locale: str = "en",
    status: SubscriberStatus = SubscriberStatus.active,
    attributes: dict[str, Any] | None = None,
    lists: Mapping[str, SubscriptionStatus] | None = None,
    consent: str | None = None,
    created_at: datetime | None = None,
    commit: bool = True,
) -> Subscriber:
    """A person (address key lower-cased), subscribed to `lists` {slug: status}.

    `consent` (e.g. "signup") also writes one consent record of that action per list.
    """
    session = db.session()
    row = Subscriber(
        email=email, email_key=email.lower(), first_name=first_name, last_name=last_name,
        state=state, postal_code=postal_code, locale=locale, status=status,
        attributes=dict(attributes or {}), created_at=created_at or utcnow(),
    )
    session.add(row)
    for slug, subscription_status in (lists or {}).items():
        subscription(row, slug, subscription_status, consent=consent, commit=False)
    if commit:
        session.commit()
    return row


def subscription(
    person: Subscriber,
    slug: str,
    status: SubscriptionStatus = SubscriptionStatus.confirmed,
    *,
    confirmed_at: datetime | None = None,
    unsubscribed_at: datetime | None = None,
    consent: str | None = None,
    commit: bool = True,
) -> Subscription:
    """`person` on list `slug` in `status`; with `consent`, a consent record of that action."""
    session = db.session()
    ml = mailing_list(slug)
    row = Subscription(subscriber=person, list_id=ml.id, status=status,
                       confirmed_at=confirmed_at, unsubscribed_at=unsubscribed_at)
    session.add(row)
    if consent is not None:
        session.add(ConsentRecord(subscriber=person, list_id=ml.id, action=consent))
    if commit:
        session.commit()
    return row


def consent_record(
    person: Subscriber,
    action: str = "signup",
    *,
    list_slug: str | None = None,
    commit: bool = True,
    **fields: str,
) -> ConsentRecord:
    """One entry of the consent ledger (`fields`: ip, source, actor, note, …)."""
    row = ConsentRecord(subscriber_id=person.id, action=action,
                        list_id=mailing_list(list_slug).id if list_slug else None, **fields)
    return _stored(row, commit)


def subscribers(
    n: int,
    *,
    list_slug: str = "newsletter",
    prefix: str = "person",
    state: str = "CA",
    locale_es_every: int = 0,
    status: SubscriptionStatus = SubscriptionStatus.confirmed,
) -> list[int]:
    """`prefix`0..n-1@example.com on `list_slug`; return their ids, in order.

    Each is First{i} Last, postal code 9{i:04d}, in `state`; every `locale_es_every`-th
    (from 0) speaks Spanish. An address that exists already is only added to the list.
    """
    session = db.session()
    ml = mailing_list(list_slug)
    ids = []
    for i in range(n):
        email = f"{prefix}{i}@example.com"
        sub = session.scalars(select(Subscriber).where(Subscriber.email_key == email)).first()
        if sub is None:
            locale = "es" if locale_es_every and i % locale_es_every == 0 else "en"
            sub = Subscriber(email=email, email_key=email, first_name=f"First{i}",
                             last_name="Last", state=state, postal_code=f"9{i:04d}",
                             locale=locale)
            session.add(sub)
            session.flush()
        session.add(Subscription(subscriber_id=sub.id, list_id=ml.id, status=status,
                                 confirmed_at=utcnow()))
        ids.append(sub.id)
    session.commit()
    return ids


def signed_up(client: FlaskClient, run_jobs: Callable[[], None], sink: SinkServer, email: str,
              lists: list[str], lang: str = "en", **fields: str) -> Subscriber:
    """Sign up and confirm through the public pages, as a person would: the ledger,
    the confirmation mail and its link are the real ones. The sink is cleared after."""
    response = client.post("/subscribe", data={"email": email, "lists": lists, "lang": lang,
                                               **fields})
    assert response.status_code == 303, response.get_data(as_text=True)
    run_jobs()
    text = next(m["text"] for m in sink.messages() if m["to"][0]["email"].lower() == email.lower())
    match = re.search(r"http://localhost(/confirm/[A-Za-z0-9_.\-]+)", text)
    assert match, text
    assert client.post(match.group(1)).status_code == 200
    sink.clear()
    session = db.session()
    session.expire_all()
    return session.scalars(select(Subscriber).where(Subscriber.email_key == email.lower())).one()


def suppression(
    email: str,
    reason: SuppressionReason = SuppressionReason.bounce,
    *,
    keep_address: bool = True,
    source: str = "",
    digest: str | None = None,
    commit: bool = True,
) -> Suppression:
    """`email` on the suppression list, by its keyed hash (or `digest`); the address is
    kept readable unless `keep_address` is False (as for an erasure)."""
    row = Suppression(email_hash=digest or email_hash(email),
                      email=email if keep_address else "", reason=reason, source=source)
    return _stored(row, commit)


# ---------------------------------------------------------------- staff


def user(email: str, role: Role = Role.viewer, *, password: str = PASSWORD) -> User:
    """A staff user who can sign in with `password`."""
    session = db.session()
    row = create_user(session, email, password, role)
    session.commit()
    return row


def api_token(role: Role | str = Role.admin, name: str = "") -> str:
    """A new API token of `role`; returns the secret (the bearer token)."""
    session = db.session()
    _row, secret = create_api_token(session, name or f"test-{Role(role).value}", Role(role))
    session.commit()
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# ---------------------------------------------------------------- campaigns


def campaign(
    name: str = "Vote",
    *,
    kind: CampaignKind = CampaignKind.alert,
    subject: str = "Act now",
    body: str = "Call your rep",
    lists: Iterable[str] = (),
    status: CampaignStatus = CampaignStatus.draft,
    commit: bool = True,
) -> Campaign:
    """A campaign row as it is stored (no validation, no audit record, no job)."""
    row = Campaign(name=name, kind=kind, subject=subject, body=body, status=status,
                   lists=[mailing_list(slug) for slug in lists])
    return _stored(row, commit, flush=True)


def delivery(
    campaign_id: int,
    subscriber_id: int | None,
    status: DeliveryStatus = DeliveryStatus.sent,
    *,
    message_id: str = "",
    event_status: str = "",
    batch_id: int | None = None,
    commit: bool = True,
) -> Delivery:
    """One recipient's row of a campaign's ledger."""
    row = Delivery(campaign_id=campaign_id, subscriber_id=subscriber_id, status=status,
                   message_id=message_id, event_status=event_status, batch_id=batch_id)
    return _stored(row, commit)


@dataclass
class Sent:
    campaign_id: int
    subscriber_ids: list[int]
    emails: list[str]


def sent_campaign(n: int = 2, lists: tuple[str, ...] = ("action-alerts",)) -> Sent:
    """An alert 'sent' to person0..n-1@example.org, each confirmed on every list, their
    deliveries sent with message id msg{subscriber id}."""
    session = db.session()
    sent = campaign(lists=lists, commit=False)
    every_list = {ml.slug: SubscriptionStatus.confirmed for ml in
                  session.scalars(select(MailingList).order_by(MailingList.id))}
    people = [subscriber(f"person{i}@example.org", lists=every_list, commit=False)
              for i in range(n)]
    session.flush()
    for person in people:
        delivery(sent.id, person.id, message_id=f"msg{person.id}", commit=False)
    session.commit()
    return Sent(sent.id, [p.id for p in people], [p.email for p in people])


def event_stat(campaign_id: int, hour: datetime, event: str, count: int, *,
               commit: bool = True) -> CampaignEventStat:
    """A campaign's webhook events of one kind in one hour, as the aggregation stores them."""
    row = CampaignEventStat(campaign_id=campaign_id, hour=hour, event=event, count=count)
    return _stored(row, commit)


def link_stat(campaign_id: int, url: str, clicks: int, *, url_hash: str = "a" * 64,
              commit: bool = True) -> CampaignLinkStat:
    row = CampaignLinkStat(campaign_id=campaign_id, url_hash=url_hash, url=url, clicks=clicks)
    return _stored(row, commit)


# ---------------------------------------------------------------- imports


def import_record(
    status: ImportStatus = ImportStatus.queued,
    *,
    list_slug: str = "newsletter",
    filename: str = "x.csv",
    heartbeat_at: datetime | None = None,
    created_at: datetime | None = None,
    attempts: int = 0,
    commit: bool = True,
) -> Import:
    """An import's row (no file parts): what the recovery pass looks at."""
    row = Import(list_id=list_id(list_slug), filename=filename, status=status,
                 heartbeat_at=heartbeat_at, attempts=attempts, created_at=created_at or utcnow())
    return _stored(row, commit, flush=True)
