"""The outbox survives a crash between the commit and the delivery job: the change and its
event are committed together, and a sweep (at a restart, or the workers' watch) gives
the row a job again."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service import db
from service.models import OutgoingDelivery, Subscriber
from service.subscribers import Evidence
from service.subscriptions.unsubscribe import unsubscribe
from tests.factories import signed_up

from .conftest import FAST, fresh, wait_for


def unsubscribe_and_crash_before_enqueue(person_id: int) -> None:
    """The change commits; the process dies before its after-commit jobs are queued."""
    session = db.session()
    person = session.get(Subscriber, person_id)
    unsubscribe(session, person, None, Evidence(actor="subscriber", endpoint="test"),
                "one-click")
    assert session.info.pop("jobs_after_commit")  # the delivery job that never got queued
    session.commit()


@pytest.fixture
def person(client, run_jobs, sink, endpoint, receiver):
    found = signed_up(client, run_jobs, sink, "lee@example.org", ["newsletter"])
    wait_for(lambda: receiver.received, run_jobs)  # subscriber.confirmed
    receiver.received.clear()
    return found


def test_a_restart_delivers_what_a_crash_left_in_the_outbox(
        app, make_app, backend, run_jobs, receiver, person, signer):
    import worker

    unsubscribe_and_crash_before_enqueue(person.id)
    run_jobs(due_within=60)
    assert receiver.received == []  # lost with the process ...
    row = fresh().scalars(select(OutgoingDelivery).where(
        OutgoingDelivery.status == "pending")).one()
    assert row.attempts == 0  # ... but not lost from the outbox

    restarted = make_app(sendgrid_webhook_public_key=signer.public_key_b64, **FAST)
    with restarted.app_context():
        if backend == "postgres":
            worker.recovery_pass(at_start=True)  # what `python worker.py` does first
            restarted.extensions["queue"].make_worker().work(burst=True)
        else:
            restarted.test_client().get("/healthz")  # the embedded mode's first request
            restarted.extensions["queue"].local.drain()
    assert [e["type"] for e in receiver.events()] == ["subscriber.unsubscribed"]
    assert receiver.events()[0]["data"]["subscriber_id"] == person.id
    assert fresh().get(OutgoingDelivery, row.id).status == "delivered"


def test_the_workers_watch_finds_a_lost_job(app, run_jobs, receiver, person, monkeypatch):
    import worker
    from service.outgoing import delivery

    unsubscribe_and_crash_before_enqueue(person.id)
    run_jobs()
    assert receiver.received == []
    # the watch waits a few seconds before it calls a job lost (a live worker may be about
    # to claim it); here it need not
    monkeypatch.setattr(delivery, "LOST_JOB_SECONDS", 0.0)
    monkeypatch.setattr(delivery, "EMBEDDED_LOST_JOB_SECONDS", 0.0)
    worker.watch_pass()
    wait_for(lambda: receiver.received, run_jobs)
    assert [e["type"] for e in receiver.events()] == ["subscriber.unsubscribed"]
    # a second watch finds nothing to do, and nothing is sent twice
    worker.watch_pass()
    run_jobs(due_within=60)
    assert len(receiver.received) == 1


def test_the_watch_leaves_waiting_and_fresh_jobs_alone(app, run_jobs, receiver, person):
    from service.outgoing.delivery import sweep

    unsubscribe_and_crash_before_enqueue(person.id)
    # due only a moment ago: a live worker may be about to take it
    assert sweep(db.session()) == {"requeued": 0}
