"""What an import must never do (re-add the suppressed, the erased, the unsubscribed),
and the default mode: pending subscriptions and confirmation mails through the queue."""

from __future__ import annotations

import csv
import re

from sqlalchemy import select

from service import db
from service.db import utcnow
from service.models import (
    ConfirmationMail,
    ConsentRecord,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from service.subscribers import Evidence
from service.subscriptions.gdpr import erase
from tests.factories import subscriber, subscription, suppression
from tests.queries import count, snapshot
from tests.support import run_cli

from .csv_files import write_csv

NOTE = "Signed the paper form at the 2025 rally"


def _known(email: str, status: SubscriptionStatus, slug: str = "newsletter") -> Subscriber:
    """Someone already on `slug`, with an attribute no import may lose."""
    row = subscriber(email, attributes={"Chapter": "North"}, commit=False)
    subscription(row, slug, status, unsubscribed_at=utcnow()
                 if status == SubscriptionStatus.unsubscribed else None)
    return row


def test_suppressed_erased_and_unsubscribed_are_refused(app, tmp_path):
    session = db.session()
    suppression("bounced@example.org", SuppressionReason.bounce, commit=False)
    gone = _known("Gone@Example.org", SubscriptionStatus.confirmed)
    erase(session, gone, Evidence(endpoint="preferences"))
    session.commit()
    _known("left@example.org", SubscriptionStatus.unsubscribed)
    _known("pending@example.org", SubscriptionStatus.pending)
    _known("other-list@example.org", SubscriptionStatus.confirmed, slug="action-alerts")

    path = write_csv(tmp_path / "in.csv", [
        ["BOUNCED@example.org", "B", "", "", "", ""],
        ["gone@EXAMPLE.ORG", "G", "", "", "", ""],
        ["Left@example.org", "L", "", "", "", ""],
        ["pending@example.org", "Pat", "", "73301", "", "2020"],
        ["other-list@example.org", "", "", "", "", ""],
        ["new@example.org", "Nina", "", "", "", ""],
    ])
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE)
    assert result.exit_code == 0, result.output
    assert "6 rows: 1 created, 2 updated, 0 skipped, 3 refused, 0 invalid" in result.output

    session.expire_all()
    keys = set(session.scalars(select(Subscriber.email_key)))
    assert "bounced@example.org" not in keys and "gone@example.org" not in keys
    left = session.scalars(select(Subscription).join(Subscriber).where(
        Subscriber.email_key == "left@example.org")).one()
    assert left.status == SubscriptionStatus.unsubscribed  # never silently re-added
    assert left.subscriber.first_name == ""  # and nothing of the refused row is kept
    pending = session.scalars(select(Subscriber).where(
        Subscriber.email_key == "pending@example.org")).one()
    # the organisation vouches: pending → confirmed; blanks filled, attributes merged
    assert [s.status for s in pending.subscriptions] == [SubscriptionStatus.confirmed]
    assert (pending.first_name, pending.postal_code, pending.state) == ("Pat", "73301", "TX")
    assert pending.attributes == {"Chapter": "North", "Member Since": "2020"}
    other = session.scalars(select(Subscriber).where(
        Subscriber.email_key == "other-list@example.org")).one()
    assert {(s.mailing_list.slug, s.status) for s in other.subscriptions} == {
        ("action-alerts", SubscriptionStatus.confirmed),
        ("newsletter", SubscriptionStatus.confirmed)}
    assert count(ConsentRecord) == 3  # pending→confirmed, other-list, new

    with (tmp_path / "in.report.csv").open(newline="", encoding="utf-8") as f:
        report = {row["email"]: row["reason"] for row in csv.DictReader(f)}
    assert set(report) == {"BOUNCED@example.org", "gone@example.org", "Left@example.org"}
    assert "bounced" in report["BOUNCED@example.org"]
    assert "erased" in report["gone@example.org"]
    assert "unsubscribed" in report["Left@example.org"]


def test_pending_mode_sends_throttled_confirmations_through_the_queue(app, client, run_jobs,
                                                                      sink, tmp_path):
    # someone who signed up a minute ago already got a confirmation mail: throttled
    client.post("/subscribe", data={"email": "recent@example.org", "lists": ["newsletter"]})
    run_jobs()
    assert len(sink.messages()) == 1
    sink.clear()

    path = write_csv(tmp_path / "pending.csv", [
        ["ana@example.org", "Ana", "", "", "es", ""],
        ["bob@example.org", "Bob", "", "", "", ""],
        ["recent@example.org", "Rita", "", "", "", ""],
    ])
    result = run_cli(app, "import", str(path), "--list", "newsletter")
    assert result.exit_code == 0, result.output
    assert "3 rows: 2 created, 1 updated, 0 skipped" in result.output
    assert "2 confirmation mails queued" in result.output
    run_jobs()
    mails = {m["to"][0]["email"]: m for m in sink.messages()}
    assert set(mails) == {"ana@example.org", "bob@example.org"}
    session = db.session()
    session.expire_all()
    statuses = {sub.subscriber.email: sub.status for sub in session.scalars(select(Subscription))}
    assert statuses == {e: SubscriptionStatus.pending
                        for e in ("ana@example.org", "bob@example.org", "recent@example.org")}
    assert {r.action for r in session.scalars(select(ConsentRecord).where(
        ConsentRecord.actor == "cli"))} == {"import_pending"}
    results = set(session.scalars(select(ConfirmationMail.result)))
    assert all(r.startswith("sent") for r in results), results

    # the mail is the real confirmation mail: its link confirms
    link = re.search(r"http://localhost(/confirm/[A-Za-z0-9_.\-]+)", mails["ana@example.org"]["text"])
    assert link and client.post(link.group(1)).status_code == 200
    session.expire_all()
    ana = session.scalars(select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert [s.status for s in ana.subscriptions] == [SubscriptionStatus.confirmed]

    sink.clear()
    before = snapshot()
    again = run_cli(app, "import", str(path), "--list", "newsletter")
    assert "0 created, 0 updated, 3 skipped" in again.output
    run_jobs()
    assert sink.messages() == [] and snapshot() == before
