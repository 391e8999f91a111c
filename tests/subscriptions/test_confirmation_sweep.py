"""A signup's confirmation mail is queued as its row: the workers' watch pass sends it.

Nothing goes to Redis from the request, so a mail whose signup was committed cannot be
lost between the commit and the queue; each row is claimed once (a lease covers a worker
killed mid-send), a transient refusal is tried again on the transactional back-off, and
rows with jobs of their own (imports, preference links) are left to those jobs.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service import db
from service.db import utcnow
from service.models import ConfirmationMail, Subscriber
from service.queue import MAIL_RETRY
from service.subscriptions import confirmations

API = "/api/v1/subscriptions"


def sign_up(client, email: str) -> None:
    response = client.post(API, json={"email": email, "lists": ["newsletter"]})
    assert response.status_code == 202, response.get_data(as_text=True)


def mail_rows() -> list[ConfirmationMail]:
    session = db.session()
    session.expire_all()
    return list(session.scalars(select(ConfirmationMail).order_by(ConfirmationMail.id)))


def due_row(email: str) -> ConfirmationMail:
    """A pending person and their due confirmation row, as a signup leaves them, without
    waking the embedded mode's job thread (so the test alone decides what runs)."""
    from service.models import SubscriptionStatus
    from tests import factories

    person = factories.subscriber(email, lists={"newsletter": SubscriptionStatus.pending})
    session = db.session()
    row = ConfirmationMail(subscriber_id=person.id, not_before=utcnow(),
                           list_ids=",".join(map(str, factories.list_ids("newsletter"))))
    session.add(row)
    session.commit()
    return row


def watch_pass(app) -> None:
    import worker

    with app.app_context():
        worker.watch_pass()


@pytest.fixture
def with_redis(app):
    if app.extensions["queue"].local is not None:
        pytest.skip("workers' watch pass: with Redis (the embedded mode wakes its own thread)")
    return app


def test_the_request_queues_no_job_and_the_watch_pass_sends_the_mail_once(
        with_redis, client, sink) -> None:
    app = with_redis
    sign_up(client, "new@example.org")
    queues = app.extensions["queue"].queues_in_order()
    assert [q.count for q in queues] == [0, 0, 0, 0]  # nothing in Redis to lose
    [row] = mail_rows()
    assert row.result == "queued" and row.not_before is not None and row.attempts == 0
    assert sink.messages() == []

    watch_pass(app)
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "new@example.org" and "/confirm/" in mail["text"]
    [row] = mail_rows()
    assert row.result.startswith("sent ") and row.attempts == 1

    watch_pass(app)
    watch_pass(app)
    assert len(sink.messages()) == 1


def test_an_existing_address_goes_the_same_way(with_redis, client, sink) -> None:
    """The general path (an address that is already known) queues its row the same way."""
    app = with_redis
    sign_up(client, "twice@example.org")
    watch_pass(app)
    # Another list a moment later: a second mail (a different list is not throttled).
    response = client.post(API, json={"email": "twice@example.org", "lists": ["action-alerts"]})
    assert response.status_code == 202
    assert [q.count for q in app.extensions["queue"].queues_in_order()] == [0, 0, 0, 0]
    watch_pass(app)
    assert len(sink.messages()) == 2
    assert [r.result.split(" ")[0] for r in mail_rows()] == ["sent", "sent"]


def test_a_claimed_row_is_left_to_its_worker_until_the_lease_runs_out(app) -> None:
    due_row("lease@example.org")
    session = db.session()
    # A worker claims the row and dies before sending.
    [claimed] = confirmations.claim_due(session)
    assert claimed.attempts == 1
    assert confirmations.claim_due(session) == []  # another worker's pass: not yet
    later = utcnow() + timedelta(seconds=confirmations.CLAIM_SECONDS + 1)
    [again] = confirmations.claim_due(session, now=later)
    assert again.mail_id == claimed.mail_id and again.attempts == 2


def test_a_transient_refusal_is_tried_again_then_given_up(app, client, sink, run_jobs) -> None:
    sink.set_faults(1.0, ["503"])
    sign_up(client, "retry@example.org")
    run_jobs()
    [row] = mail_rows()
    assert row.result == "queued" and row.attempts == 1
    assert row.not_before is not None
    assert row.not_before.replace(tzinfo=None) > (
        utcnow() + timedelta(seconds=MAIL_RETRY[0] - 2)).replace(tzinfo=None)
    assert sink.messages() == []

    run_jobs(due_within=MAIL_RETRY[0] + 1)  # the first retry: refused again
    [row] = mail_rows()
    assert row.result == "queued" and row.attempts == 2

    sink.set_faults(0.0, [])
    run_jobs(due_within=MAIL_RETRY[1] + 1)
    [row] = mail_rows()
    assert row.result.startswith("sent ") and row.attempts == 3
    assert len(sink.messages()) == 1


def test_after_the_last_retry_the_row_says_failed(app, client, sink, run_jobs) -> None:
    sink.set_faults(1.0, ["503"])
    sign_up(client, "gone@example.org")
    run_jobs()  # the first attempt (the embedded mode's thread, or a watch pass)
    session = db.session()
    from service.jobs.subscriptions import send_due_confirmations

    for _ in range(len(MAIL_RETRY)):
        session.execute(update(ConfirmationMail).values(not_before=utcnow()))
        session.commit()
        send_due_confirmations()
        run_jobs()
    [row] = mail_rows()
    assert row.attempts == len(MAIL_RETRY) + 1
    assert row.result.startswith(f"failed after {len(MAIL_RETRY) + 1} attempts")
    session.execute(update(ConfirmationMail).values(not_before=utcnow()))
    session.commit()
    assert send_due_confirmations() == "none due"
    assert sink.messages() == []


def test_rows_with_jobs_of_their_own_are_not_swept(app, client, sink, run_jobs) -> None:
    """An import's confirmation rows and a preference-link mail have no `not_before`:
    their own jobs send them, the sweep never does."""
    sign_up(client, "own@example.org")
    run_jobs()
    session = db.session()
    subscriber = session.scalars(select(Subscriber)).one()
    session.add_all([
        ConfirmationMail(subscriber_id=subscriber.id, list_ids="1", result="queued"),
        ConfirmationMail(subscriber_id=subscriber.id, list_ids="",
                         result="queued preferences link"),
    ])
    session.commit()
    from service.jobs.subscriptions import send_due_confirmations

    assert send_due_confirmations() == "none due"
    rows = mail_rows()
    assert rows[0].result.startswith("sent ")
    assert [(r.result, r.attempts) for r in rows[1:]] == [
        ("queued", 0), ("queued preferences link", 0)]
    assert len(sink.messages()) == 1


def test_nothing_pending_any_more_is_recorded_not_claimed_again(
        app, client, sink, run_jobs) -> None:
    sink.set_faults(1.0, ["503"])
    sign_up(client, "done@example.org")
    run_jobs()  # refused once: waits for its retry
    session = db.session()
    from service.jobs.subscriptions import send_due_confirmations
    from service.models import Subscription, SubscriptionStatus

    # Confirmed some other way before the retry (staff, say): nothing left to ask.
    sink.set_faults(0.0, [])
    session.execute(update(Subscription).values(status=SubscriptionStatus.confirmed))
    session.execute(update(ConfirmationMail).values(not_before=utcnow()))
    session.commit()
    assert send_due_confirmations() == "1 skipped"
    [row] = mail_rows()
    assert row.result == "nothing pending" and row.attempts == 2
    assert send_due_confirmations() == "none due"
    assert sink.messages() == []


def test_a_claim_skips_the_rows_another_worker_is_claiming(app, client, backend) -> None:
    if backend != "postgres":
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    for i in range(30):
        sign_up(client, f"p{i}@example.org")
    with db.new_session() as first, db.new_session() as second:
        # The first worker's claim is under way: its 20 rows are locked, not yet moved.
        held = first.scalars(select(ConfirmationMail.id).order_by(ConfirmationMail.id)
                             .limit(20).with_for_update()).all()
        theirs = confirmations.claim_due(second, limit=30)
        first.rollback()
        assert len(theirs) == 10 and not set(held) & {d.mail_id for d in theirs}
        mine = confirmations.claim_due(first, limit=30)
        assert sorted(d.mail_id for d in mine) == sorted(held)


def test_the_embedded_mode_sends_what_a_restart_left_queued(app, client, sink, run_jobs) -> None:
    """No worker runs there: the first request after a start looks for due rows."""
    if app.extensions["queue"].local is None:
        pytest.skip("the embedded mode (workers' watch passes do this with Redis)")
    due_row("left@example.org")
    run_jobs()
    assert sink.messages() == []  # nothing woke it yet
    assert client.get("/healthz").status_code == 200  # the first request after the start
    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "left@example.org"
