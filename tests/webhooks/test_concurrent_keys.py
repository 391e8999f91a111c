"""Two workers applying batches that share events, at once, on PostgreSQL: the second's
key insert waits on the first's uncommitted index entries and then finds them taken, so
each event is new to exactly one transaction."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from service import db
from service.models import WebhookEventKey
from service.webhooks.ingest import fresh_events

from .events import event


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("first_commits", [True, False])
def test_the_same_events_in_two_transactions_at_once(app, first_commits):
    shared = [event("delivered") for _ in range(50)]
    own = [event("open") for _ in range(5)]
    first = db.session()
    fresh, duplicates = fresh_events(first, shared)
    assert len(fresh) == 50 and not duplicates  # not committed yet: it holds the keys
    outcome: dict[str, object] = {}

    def second_worker() -> None:
        with app.app_context(), db.new_session() as other:
            try:
                outcome["result"] = fresh_events(other, own + shared)  # waits for the first
                other.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

    thread = threading.Thread(target=second_worker)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # its insert waits on the first transaction's index entries
    if first_commits:
        first.commit()
    else:
        first.rollback()  # the first worker died: its events are the second's to apply
    thread.join(30)
    assert "error" not in outcome, outcome
    fresh, duplicates = outcome["result"]  # type: ignore[misc]
    if first_commits:
        assert fresh == own and duplicates == {"delivered": 50}
    else:
        assert fresh == own + shared and not duplicates
    db.session().expire_all()
    assert db.session().scalar(select(func.count()).select_from(WebhookEventKey)) == 55


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_second_worker_takes_the_next_batch_not_none(app, post_events):
    """While one worker holds the oldest batch, another claims the next one (it used to
    compute the same head, find it locked and stop: the workers took turns)."""
    from service.models import WebhookBatch
    from service.webhooks.effects import claim_batches

    for _ in range(3):  # two of these make a chunk (20,000 events), three do not
        assert post_events([event("delivered") for _ in range(8000)]).json["queued"] == 8000
    first = db.session()
    held = claim_batches(first)
    assert len(held) == 2
    with app.app_context(), db.new_session() as other:
        taken = claim_batches(other)
        assert len(taken) == 1 and taken[0][0] not in {row[0] for row in held}
        other.rollback()
    first.rollback()
    assert db.session().scalar(select(func.count()).select_from(WebhookBatch)) == 3
