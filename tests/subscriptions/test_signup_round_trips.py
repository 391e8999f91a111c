"""A new address's signup is one statement in its own transaction on PostgreSQL: no BEGIN
and no COMMIT round trip (read from libpq's protocol trace of the real connections)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from service import db
from service.models import ConfirmationMail, ConsentRecord, Subscriber, Subscription


@pytest.fixture
def traced(app: Flask, backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Every connection the app checks out writes its protocol messages to one file; the
    fixture's function stops the tracing and returns what was written (libpq buffers it)."""
    if backend != "postgres":
        pytest.skip("the one-statement signup is PostgreSQL's")
    engine = app.extensions["db"].engine
    path = tmp_path / "libpq.trace"
    sink = path.open("w")
    conns: list[Any] = []

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_conn not in conns:
            dbapi_conn.pgconn.trace(sink.fileno())
            conns.append(dbapi_conn)

    def stop() -> str:
        event.remove(engine, "checkout", on_checkout)
        for conn in conns:
            if not conn.closed:
                conn.pgconn.untrace()  # flushes libpq's buffer
        conns.clear()
        sink.close()
        return path.read_text(errors="replace")

    event.listen(engine, "checkout", on_checkout)
    yield stop
    if conns:
        stop()


def post(client: Any, email: str) -> None:
    answer = client.post("/api/v1/subscriptions", json={"email": email,
                                                        "lists": ["newsletter"]})
    assert answer.status_code == 202, answer.get_data(as_text=True)


def test_a_new_address_sends_no_begin_and_no_commit(app, client, traced) -> None:
    post(client, "first@example.org")  # reads the public lists (one transaction)
    for i in range(3):
        post(client, f"new{i}@example.org")  # the process's copy of the lists: no read
    trace = traced()
    # The first signup's transaction only (the list read and its statement).
    assert trace.count('Query\t "BEGIN') == 1, trace[-3000:]
    assert trace.count('Query\t "COMMIT') == 1, trace[-3000:]
    assert trace.count("INSERT INTO confirmation_mails") >= 1
    # And it is all there, committed (read from another transaction).
    for i in range(3):
        person = db.session().scalars(
            select(Subscriber).where(Subscriber.email_key == f"new{i}@example.org")).one()
        for model in (Subscription, ConsentRecord, ConfirmationMail):
            assert db.session().scalar(select(func.count()).select_from(model).where(
                model.subscriber_id == person.id)) == 1


def test_an_existing_address_still_gets_a_transaction(app, client, traced) -> None:
    post(client, "again@example.org")
    post(client, "again@example.org")  # the statement inserts nothing: the general path
    post(client, "again@example.org")
    trace = traced()
    assert trace.count('Query\t "BEGIN') >= 3, trace[-3000:]
