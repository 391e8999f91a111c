"""Two deliveries of the same batch at once on PostgreSQL: the second's `COPY` meets the
first's rows in the unique indexes, and that batch is stored again with ON CONFLICT, so each
event is stored once and the second answer counts them as duplicates."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from service import db
from service.models import WebhookEvent
from service.webhooks.ingest import store_events

from .events import event


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_same_batch_stored_by_two_requests_at_once(app):
    batch = [event("delivered") for _ in range(50)]
    first = db.session()
    assert store_events(first, batch).stored == 50  # not committed yet: its rows hold the keys
    outcome: dict[str, object] = {}

    def second_request() -> None:
        with app.app_context(), db.new_session() as other:
            try:
                outcome["result"] = store_events(other, batch)  # waits for the first
                other.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

    thread = threading.Thread(target=second_request)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # its COPY waits on the first request's index entries
    first.commit()
    thread.join(30)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result.stored == 0 and result.duplicates == 50  # type: ignore[attr-defined]
    db.session().expire_all()
    assert db.session().scalar(select(func.count()).select_from(WebhookEvent)) == 50
