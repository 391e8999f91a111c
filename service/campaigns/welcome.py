"""A list's welcome mail: sent once to each person who confirms the list.

Staff write it per list in English and Spanish (subject and Markdown body, the same
sandboxed templates as a campaign, with the person variables). The public confirmation
(`subscriptions.signup.confirm`) queues the job `service.jobs.welcome.send_welcome` for
each list it newly confirmed that has a welcome; staff imports, API and staff additions
and re-confirmations of a confirmed subscription queue nothing.

At most once per person and list: `send_welcome` first claims the `(subscriber, list)`
row of `welcome_mails` (unique) in its own committed transaction, then sends. A second run
of the job finds the claim and stops; a job that dies after sending leaves its claim, so
nobody gets the welcome twice (a crash between the claim and the send means no welcome,
the lesser harm). A transient refusal gives the claim back, so the queue's retry can send.

The mail is a campaign mail in form: the campaign footer (unsubscribe, preferences,
postal address) and one-click unsubscribe headers naming the list.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parseaddr

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit, config
from ..db import utcnow
from ..mail.base import OutgoingMail, PermanentMailError, Personalization, TransientMailError
from ..mail.compose import safe_name
from ..mail.transport import transport
from ..models import (
    Campaign,
    CampaignKind,
    ContentFormat,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    WelcomeMail,
)
from ..queue import enqueue_after_commit
from ..subscribers import is_suppressed
from ..tokens import one_click_headers, preferences_url, unsubscribe_url
from .render import SAMPLE_PERSON, RenderedVariant, render_variant, variant_locale

log = logging.getLogger(__name__)

SEND_WELCOME_TEST = "service.jobs.welcome.send_test"
LAYOUT = "email/welcome.html"


def welcome_campaign(subject: str, body: str) -> Campaign:
    """A transient campaign (never added to a session, no id: no view link) holding a
    welcome, so the campaign renderer renders it."""
    return Campaign(id=0, name="welcome", kind=CampaignKind.newsletter, subject=subject,
                    preheader="", body=body, format=ContentFormat.markdown, variants={},
                    source_code="", updated_at=datetime.now(UTC))


def render_welcome(subject: str, body: str, locale: str) -> RenderedVariant:
    """The welcome as a mail with placeholders (ContentError if it cannot render)."""
    return render_variant(welcome_campaign(subject, body), locale, layout=LAYOUT)


def preview(subject: str, body: str, locale: str) -> dict[str, str]:
    """The welcome as a sample person would get it (subject, HTML, text), for staff."""
    return {"locale": locale, **render_welcome(subject, body, locale).filled(SAMPLE_PERSON)}


def _mail(variant: RenderedVariant, email: str, name: str, values: dict[str, str],
          categories: list[str]) -> OutgoingMail:
    conf = config.settings()
    from_name, from_email = parseaddr(conf.mail_from)
    subject, html, text = variant.subject, variant.html, variant.text
    # One recipient: fill the placeholders here rather than through substitutions.
    for key, value in variant.substitutions(values).items():
        subject, html, text = (subject.replace(key, value), html.replace(key, value),
                               text.replace(key, value))
    return OutgoingMail(
        subject=" ".join(subject.split()), html=html, text=text, from_email=from_email,
        from_name=from_name, reply_to=conf.mail_reply_to,
        personalizations=[Personalization(
            email=email, name=safe_name(name),
            headers=one_click_headers(values["unsubscribe_url"]))],
        categories=categories,
    )


def _person_values(subscriber: Subscriber | None, address: str,
                   list_id: int) -> dict[str, str]:
    conf = config.settings()
    sid = subscriber.id if subscriber else 0
    return {
        "first_name": subscriber.first_name if subscriber else "Test",
        "last_name": subscriber.last_name if subscriber else "",
        "email": address,
        "state": subscriber.state if subscriber else "",
        "postal_code": subscriber.postal_code if subscriber else "",
        "unsubscribe_url": unsubscribe_url(sid, [list_id], settings=conf),
        "preferences_url": preferences_url(sid, conf),
    }


def send_welcome(session: Session, subscriber_id: int, list_id: int) -> str:
    """Send the list's welcome to the subscriber once (see the module). Safe to run twice;
    TransientMailError is raised for the queue to retry."""
    subscriber = session.get(Subscriber, subscriber_id)
    ml = session.get(MailingList, list_id)
    if subscriber is None or ml is None:
        return "gone"
    confirmed = session.scalar(select(Subscription.id).where(
        Subscription.subscriber_id == subscriber_id, Subscription.list_id == list_id,
        Subscription.status == SubscriptionStatus.confirmed))
    if confirmed is None:
        return "not confirmed"
    if subscriber.status != SubscriberStatus.active or is_suppressed(
            session, subscriber.email, include_erased=False):
        return "not mailable"
    content = ml.welcome_for(variant_locale(subscriber.locale))
    if content is None:
        return "no welcome"
    # The claim: committed before anything is sent.
    try:
        with session.begin_nested():
            session.add(WelcomeMail(subscriber_id=subscriber_id, list_id=list_id,
                                    locale=content["locale"], claimed_at=utcnow()))
    except IntegrityError:
        session.rollback()
        return "already welcomed"
    session.commit()
    variant = render_welcome(content["subject"], content["body"], content["locale"])
    mail = _mail(variant, subscriber.email, f"{subscriber.first_name} {subscriber.last_name}",
                 _person_values(subscriber, subscriber.email, list_id),
                 ["welcome", f"welcome-list-{list_id}"])
    mail.personalizations[0].custom_args = {"subscriber_id": str(subscriber_id),
                                            "welcome_list_id": str(list_id)}
    try:
        result = transport().send(mail)
    except TransientMailError:
        session.execute(delete(WelcomeMail).where(WelcomeMail.subscriber_id == subscriber_id,
                                                  WelcomeMail.list_id == list_id))
        session.commit()
        raise
    except PermanentMailError as exc:
        _note(session, subscriber_id, list_id, f"failed: {exc}")
        log.error("welcome of list %s to subscriber %s refused: %s", list_id, subscriber_id,
                  exc)
        return f"failed: {exc}"
    _note(session, subscriber_id, list_id, f"sent {result.message_id}")
    return f"sent {result.message_id}"


def _note(session: Session, subscriber_id: int, list_id: int, result: str) -> None:
    row = session.scalars(select(WelcomeMail).where(
        WelcomeMail.subscriber_id == subscriber_id, WelcomeMail.list_id == list_id)).first()
    if row is not None:
        row.result = result[:200]
        session.commit()


def queue_test(session: Session, ml: MailingList, locale: str, address: str,
               actor: str) -> None:
    """Queue a test of the list's stored welcome in `locale` to a staff address."""
    enqueue_after_commit(session, SEND_WELCOME_TEST, ml.id, locale, address, actor)


def send_test(session: Session, list_id: int, locale: str, address: str, actor: str) -> str:
    """The list's welcome in `locale` (else English) to `address`, marked [TEST]; links
    name the subscriber with that address if there is one. Records nothing but an audit
    record: the real welcome is still sent when that person confirms."""
    ml = session.get(MailingList, list_id)
    content = ml.welcome_for(locale) if ml is not None else None
    if ml is None or content is None:
        return "no welcome"
    subscriber = session.scalars(select(Subscriber).where(
        Subscriber.email_key == address.lower())).first()
    variant = render_welcome(f"[TEST] {content['subject']}", content["body"],
                             content["locale"])
    name = f"{subscriber.first_name} {subscriber.last_name}" if subscriber else ""
    mail = _mail(variant, address, name, _person_values(subscriber, address, list_id),
                 ["welcome-test"])
    result = transport().send(mail)
    audit.record(session, actor=actor, action="list.welcome_test", object_type="list",
                 object_id=list_id, detail={"locale": locale})
    session.commit()
    return f"sent {result.message_id}"


__all__ = ["SEND_WELCOME_TEST", "preview", "queue_test",
           "render_welcome", "send_test", "send_welcome", "welcome_campaign"]
