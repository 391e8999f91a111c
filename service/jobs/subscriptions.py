"""Background jobs of the subscription path. Jobs take ids and reload state."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import db
from ..mail.base import OutgoingMail, PermanentMailError, TransientMailError
from ..mail.compose import transactional
from ..mail.transport import transport
from ..models import ConfirmationMail, Subscriber, Subscription, SubscriptionStatus
from ..observability import metrics
from ..subscriptions import confirmations
from ..tokens import confirm_url

log = logging.getLogger(__name__)


def send_confirmation(subscriber_id: int, list_ids: list[int], mail_id: int | None = None) -> str:
    """Mail the confirmation link for the lists still pending. Safe to run twice. Every
    outcome is noted on the mail's row (`mail_id`), so that nothing claims it again."""
    session = db.session()
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        _record(mail_id, "subscriber gone")
        return "subscriber gone"
    pending = list(
        session.scalars(
            select(Subscription).where(
                Subscription.subscriber_id == subscriber_id,
                Subscription.list_id.in_(list_ids),
                Subscription.status == SubscriptionStatus.pending,
            )
        )
    )
    if not pending:
        _record(mail_id, "nothing pending")
        return "nothing pending"
    ids = [s.list_id for s in pending]
    mail = _mail_to(
        subscriber,
        "confirm",
        lists=[s.mailing_list.name_for(subscriber.locale) for s in pending],
        confirm_url=confirm_url(subscriber.id, ids),
    )
    return _send_and_record(
        mail, "confirm", "confirmation", subscriber_id, mail_id, sent_note="sent"
    )


def send_due_confirmations(budget_seconds: float = 5.0) -> str:
    """Send the signups' confirmation mails that are due (`subscriptions.confirmations`),
    a claimed batch at a time, for about `budget_seconds` at most: the watch pass that
    runs this must not hold a campaign's batches back for long."""
    session = db.session()
    started = time.monotonic()
    counts: Counter[str] = Counter()
    while True:
        claimed = confirmations.claim_due(session)
        for due in claimed:
            counts[_send_claimed(session, due)] += 1
        if len(claimed) < confirmations.CLAIM_BATCH or time.monotonic() - started > budget_seconds:
            break
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none due"


def _send_claimed(session: Session, due: confirmations.Due) -> str:
    """One claimed confirmation mail; what became of it, for the job's summary."""
    try:
        outcome = send_confirmation(due.subscriber_id, due.list_ids, due.mail_id)
    except Exception as exc:  # noqa: BLE001 - a transient refusal, or a bug: try it later
        session.rollback()
        if not isinstance(exc, TransientMailError):
            log.exception("confirmation mail %s could not be sent", due.mail_id)
        again = confirmations.try_again(session, due, str(exc) or type(exc).__name__)
        return "to retry" if again else "failed"
    if outcome.startswith(("sent", "failed")):
        return outcome.split(" ", 1)[0].rstrip(":")
    return "skipped"  # nothing pending any more, or the person was erased


def _mail_to(subscriber: Subscriber, template: str, **context: Any) -> OutgoingMail:
    """The transactional mail `template`, addressed to the subscriber in their language.

    No name, in the greeting or in `To:`: anyone can have a confirmation or a preferences
    link sent to any address, and a pending subscriber's name is whatever a stranger typed
    into the signup form.
    """
    return transactional(template, subscriber.locale, subscriber.email, **context)


def _send_and_record(
    mail: OutgoingMail,
    kind: str,
    what: str,
    subscriber_id: int,
    mail_id: int | None,
    *,
    sent_note: str,
) -> str:
    """Send one transactional mail, count it, and note the outcome on its ledger row.

    A transient refusal is re-raised so that the queue tries again later; a permanent one
    is logged and recorded as failed.
    """
    try:
        result = transport().send(mail)
    except TransientMailError:
        metrics().mails.labels(kind, "retry").inc()
        raise  # RQ's Retry (or the in-process worker) tries again later
    except PermanentMailError as exc:
        metrics().mails.labels(kind, "failed").inc()
        log.error("%s to subscriber %s refused: %s", what, subscriber_id, exc)
        _record(mail_id, f"failed: {exc}")
        return f"failed: {exc}"
    metrics().mails.labels(kind, "sent").inc()
    _record(mail_id, f"{sent_note} {result.message_id}")
    return f"sent {result.message_id}"


def _record(mail_id: int | None, result: str) -> None:
    """Note `result` on the mail's row (one UPDATE: a sweep records every mail it sends)."""
    if mail_id is None:
        return
    session = db.session()
    session.execute(update(ConfirmationMail).where(ConfirmationMail.id == mail_id)
                    .values(result=result[:200]).execution_options(synchronize_session=False))
    session.commit()


def send_preferences_link(subscriber_id: int, mail_id: int | None = None) -> str:
    """Mail a fresh preferences link (asked for on `GET /preferences`). Safe to run twice."""
    from ..tokens import preferences_url

    session = db.session()
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return "subscriber gone"
    mail = _mail_to(subscriber, "preferences_link", preferences_url=preferences_url(subscriber.id))
    return _send_and_record(
        mail,
        "preferences_link",
        "preferences link",
        subscriber_id,
        mail_id,
        sent_note="sent preferences link",
    )
