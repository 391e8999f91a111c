"""Jobs of imports started from the API or the admin."""

from __future__ import annotations

from sqlalchemy import select

from .. import db
from ..imports import recovery, runs
from ..models import ConfirmationMail
from .subscriptions import send_confirmation


def run_import(import_id: int) -> str:
    """Run (or resume) the import `import_id` from its stored upload."""
    return runs.run(db.session(), import_id)


def send_import_confirmations(mail_ids: list[int]) -> str:
    """Send the confirmation mails of an import batch through `send_confirmation`.

    Mails already sent (or refused) by an earlier attempt are passed over, so a retry
    after a transient error sends only what is left.
    """
    session = db.session()
    queued = session.execute(
        select(ConfirmationMail.id, ConfirmationMail.subscriber_id, ConfirmationMail.list_ids)
        .where(ConfirmationMail.id.in_(mail_ids), ConfirmationMail.result == "queued")
        .order_by(ConfirmationMail.id)
    ).all()
    session.rollback()  # no transaction held open while mailing
    for mail_id, subscriber_id, list_ids in queued:
        send_confirmation(subscriber_id, [int(i) for i in list_ids.split(",") if i], mail_id)
    return f"{len(queued)} confirmation mails handled"


def recover() -> dict[str, int]:
    """The imports' recovery pass (the embedded mode's; workers run it as maintenance)."""
    return recovery.recover_imports()
