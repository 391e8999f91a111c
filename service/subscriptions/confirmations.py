"""The confirmation mails of signups, sent from their rows.

A signup queues no job. The transaction that records it writes the mail's
`confirmation_mails` row with `not_before` = now, and every worker's watch pass (every
few seconds, `worker.py`) claims the rows that are due and sends them. The request does
one thing less (queueing an RQ job was 15 % of a signup's web CPU, `docs/benchmarks.md`),
and a mail whose row is committed cannot be lost between the commit and Redis: there is
no job to lose.

A claim moves the row's `not_before` a lease ahead (`CLAIM_SECONDS`) and counts the
attempt, in one UPDATE that concurrent workers skip past; the sender then notes the mail's
outcome in `result` in place of `queued`. A worker killed between the two leaves the row
queued, and it is claimed again once the lease has run out (one duplicate mail at most).
A transient refusal puts the row back with the transactional back-off (`MAIL_RETRY`);
after the last one it is recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import is_pg, utcnow
from ..models import ConfirmationMail
from ..queue import MAIL_RETRY, wake_after_commit

# The job that sends the due rows: run by the watch pass, woken in the embedded mode.
SEND_DUE = "service.jobs.subscriptions.send_due_confirmations"
# How long a claimed row is left to its worker before another may claim it again.
CLAIM_SECONDS = 600
# Rows claimed per transaction.
CLAIM_BATCH = 200

QUEUED = "queued"


@dataclass(frozen=True)
class Due:
    """A claimed row: what its mail needs."""

    mail_id: int
    subscriber_id: int
    list_ids: list[int]
    attempts: int  # this one included


def queue(session: Session, mail: ConfirmationMail) -> None:
    """Make `mail` (a new row in the caller's transaction) due now."""
    mail.not_before = utcnow()
    wake(session)


def wake(session: Session, at: datetime | None = None) -> None:
    """Have the due rows sent once the caller commits (or at `at`): in the embedded mode
    its job thread runs the sweep; with Redis the workers' watch pass does anyway."""
    wake_after_commit(session, SEND_DUE, at=at)


def claim_due(session: Session, limit: int = CLAIM_BATCH, now: datetime | None = None
              ) -> list[Due]:
    """Claim up to `limit` due rows, oldest first, and commit the claim."""
    now = now or utcnow()
    cm = ConfirmationMail
    due = (select(cm.id).where(cm.result == QUEUED, cm.not_before <= now)
           .order_by(cm.not_before).limit(limit))
    if is_pg(session):
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(
        update(cm).where(cm.id.in_(due.scalar_subquery()))
        .values(not_before=now + timedelta(seconds=CLAIM_SECONDS), attempts=cm.attempts + 1)
        .returning(cm.id, cm.subscriber_id, cm.list_ids, cm.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return sorted(
        (Due(int(r.id), int(r.subscriber_id), [int(i) for i in r.list_ids.split(",") if i],
             int(r.attempts)) for r in rows),
        key=lambda d: d.mail_id,
    )


def try_again(session: Session, due: Due, error: str) -> bool:
    """After a transient refusal: back in the queue after the next pause of `MAIL_RETRY`,
    or failed for good after the last one. True if it will be tried again."""
    now = utcnow()
    row = update(ConfirmationMail).where(ConfirmationMail.id == due.mail_id,
                                         ConfirmationMail.result == QUEUED)
    again = due.attempts <= len(MAIL_RETRY)
    if again:
        when = now + timedelta(seconds=MAIL_RETRY[due.attempts - 1])
        row = row.values(not_before=when)
        wake(session, at=when)
    else:
        row = row.values(result=f"failed after {due.attempts} attempts: {error}"[:200])
    session.execute(row.execution_options(synchronize_session=False))
    session.commit()
    return again
