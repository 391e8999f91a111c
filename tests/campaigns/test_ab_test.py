"""A/B subject tests end to end: API → freeze with a sample → the sink → signed open
events posted to the webhook → the winner goes to the rest, exactly once per person."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text, update

from sendgrid_sink import SinkServer
from sendgrid_sink.signing import new_private_key
from service import db
from service.campaigns.recovery import recover, watch
from service.campaigns.sending import start_campaign
from service.db import utcnow
from service.models import Batch, Campaign, Delivery
from tests.factories import subscribers
from tests.support import kill_worker, start_worker, stop_worker, worker_env
from tests.webhooks.events import URL, Signer

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]
AB = {"subjects": ["Subject A for {{ first_name }}", "Subject B"], "sample_percent": 50,
      "metric": "unique_opens", "wait_minutes": 30}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(new_private_key())


@pytest.fixture
def app(make_app: Callable[..., Flask], signer: Signer) -> Iterator[Flask]:
    app = make_app(campaign_batch_size=5, campaign_lease_seconds=2,
                   sendgrid_webhook_public_key=signer.public_key_b64)
    with app.app_context():
        yield app


def post_opens(client: FlaskClient, signer: Signer, cid: int, subscriber_ids: list[int],
               event: str = "open") -> None:
    """Signed events to the real webhook endpoint, as SendGrid posts them (custom_args
    at the top level); the caller runs the effects job."""
    events = [{"event": event, "email": f"x{sid}@example.com", "timestamp": 1_790_000_000 + n,
               "sg_event_id": f"ab-{cid}-{sid}-{event}-{n}", "sg_message_id": f"m{sid}.f",
               "campaign_id": str(cid), "subscriber_id": str(sid)}
              for n, sid in enumerate(subscriber_ids)]
    # One person opening twice counts once.
    events += [dict(e, sg_event_id=e["sg_event_id"] + "-again", timestamp=e["timestamp"] + 1)
               for e in events[:1]]
    body = json.dumps(events).encode() + b"\r\n"
    response = client.post(URL, data=body, headers=signer.headers(body))
    assert response.status_code == 200, response.get_json()


def ledger(cid: int) -> dict[int, int | None]:
    """subscriber id → the subject variant the ledger records for them."""
    db.session().rollback()
    return dict(db.session().execute(
        select(Delivery.subscriber_id, Delivery.variant).where(Delivery.campaign_id == cid)
    ).all())


def make_due(cid: int) -> None:
    """The test's wait is over (as if `wait_minutes` had passed)."""
    db.session().execute(update(Campaign).where(Campaign.id == cid)
                         .values(ab_decide_at=utcnow() - timedelta(seconds=1)))
    db.session().commit()


def by_variant(cid: int) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for sid, variant in ledger(cid).items():
        if variant is not None:
            groups.setdefault(variant, []).append(sid)
    return groups


def sent_with_a_test(client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
                     n: int) -> tuple[dict[str, str], int]:
    """n subscribers and a campaign with the test AB sent to them, its sample out:
    (the campaigner's headers, the campaign id)."""
    subscribers(n)
    staff = api_token("campaigner")
    cid = create(client, staff, ab_test=AB)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    return staff, cid


def received_once_each(sink: SinkServer, n: int) -> bool:
    """The sink holds one mail for each of person0 … person{n-1}, and no other."""
    return Counter(to(m) for m in sink.messages()) == Counter(
        f"person{i}@example.com" for i in range(n))


def test_the_subject_with_more_opens_goes_to_the_rest_once_each(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer, signer: Signer,
) -> None:
    ids = subscribers(43)
    staff = api_token("campaigner")
    cid = create(client, staff, ab_test=AB)["id"]
    assert client.post(f"/api/v1/campaigns/{cid}/send", headers=staff).status_code == 202
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "sending" and data["ab_test"]["status"] == "testing"
    assert data["ab_test"]["winner"] is None and data["ab_test"]["decide_at"]
    # The sample: 50 % of 43 → 22, split 11 / 11, recorded per recipient in the ledger.
    groups = by_variant(cid)
    assert sorted(len(g) for g in groups.values()) == [11, 11]
    assert [v["sent"] for v in data["ab_test"]["variants"]] == [11, 11]
    assert data["counts"]["sent"] == 22 and data["counts"]["queued"] == 21
    sample = sink.messages()
    assert len(sample) == 22
    index = dict(zip(ids, range(43), strict=True))
    for m in sample:
        sid = int(m["custom_args"]["subscriber_id"])
        expected = (f"Subject A for First{index[sid]}" if sid in groups[0] else "Subject B")
        assert m["subject"] == expected

    # Opens: 4 people of B, 2 of A (and an event about someone outside the sample).
    post_opens(client, signer, cid, groups[1][:4] + groups[0][:2])
    run_jobs()
    figures = get(client, staff, cid)["ab_test"]["variants"]
    assert [(v["unique_opens"], v["unique_clicks"]) for v in figures] == [(2, 0), (4, 0)]
    assert figures[1]["subject"] == "Subject B"

    # Not yet due: the scheduled decision job runs and decides nothing.
    run_jobs(due_within=60)
    assert get(client, staff, cid)["ab_test"]["status"] == "testing"
    make_due(cid)
    run_jobs(due_within=3600)  # the scheduled decision job, then the released batches
    data = get(client, staff, cid)
    assert data["ab_test"]["status"] == "decided" and data["ab_test"]["winner"] == 1
    assert data["status"] == "sent"
    assert data["counts"] == {"total": 43, "queued": 0, "sent": 43, "failed": 0, "skipped": 0}
    received = Counter(to(m) for m in sink.messages())
    assert received == Counter(f"person{i}@example.com" for i in range(43))
    rest = sink.messages()[22:]
    assert len(rest) == 21 and {m["subject"] for m in rest} == {"Subject B"}
    # The variants' figures stay those of the test.
    assert [v["sent"] for v in data["ab_test"]["variants"]] == [11, 11]
    # A second decision is refused.
    again = client.post(f"/api/v1/campaigns/{cid}/ab/decide", headers=staff, json={"winner": 0})
    assert again.status_code == 409


def test_ties_go_to_the_first_subject_and_the_watch_pass_decides_when_the_job_is_lost(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer, signer: Signer,
) -> None:
    subscribers(30)
    staff = api_token("campaigner")
    cid = create(client, staff, ab_test={**AB, "subjects": ["One", "Two", "Three"],
                                          "sample_percent": 30,
                                          "metric": "unique_clicks"})["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    groups = by_variant(cid)
    assert sorted(len(g) for g in groups.values()) == [3, 3, 3]
    # One click each for "Two" and "Three", and many opens for "Three" (not the metric).
    post_opens(client, signer, cid, [groups[1][0], groups[2][0]], event="click")
    post_opens(client, signer, cid, groups[2], event="open")
    run_jobs()
    make_due(cid)
    # The scheduled job is lost (no run_jobs with a horizon): the watch pass decides.
    assert watch()["ab_decided"] == 1
    assert watch()["ab_decided"] == 0
    run_jobs()
    data = get(client, staff, cid)
    assert data["ab_test"]["winner"] == 1 and data["status"] == "sent"
    assert received_once_each(sink, 30)
    assert {m["subject"] for m in sink.messages()[9:]} == {"Two"}


def test_no_events_at_all_is_a_tie_the_first_subject_wins(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    staff, cid = sent_with_a_test(client, api_token, run_jobs, 10)
    make_due(cid)
    assert recover()["ab_decided"] == 1
    run_jobs()
    data = get(client, staff, cid)
    assert data["ab_test"]["winner"] == 0 and data["status"] == "sent"
    assert len(sink.messages()) == 10


def test_staff_decide_early_and_the_refusals(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    subscribers(20)
    staff = api_token("campaigner")
    plain = create(client, staff)["id"]
    cid = create(client, staff, ab_test=AB)["id"]
    url = f"/api/v1/campaigns/{cid}/ab/decide"
    # Not started yet, or no test at all: 409.
    assert client.post(url, headers=staff, json={"winner": 0}).status_code == 409
    assert client.post(f"/api/v1/campaigns/{plain}/ab/decide", headers=staff,
                       json={"winner": 0}).status_code == 409
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    # An editor may not decide; bad winners are 422 naming the field.
    assert client.post(url, headers=api_token("editor"), json={"winner": 1}).status_code == 403
    for bad in [2, -1, "1", 1.5, None, True, [1], {"x": 1}, 10**30]:
        response = client.post(url, headers=staff, json={"winner": bad})
        assert response.status_code == 422, bad
        assert "winner" in json.dumps(response.get_json()), bad
    assert client.post(url, headers=staff, json={}).status_code == 422
    assert client.post("/api/v1/campaigns/99999/ab/decide", headers=staff,
                       json={"winner": 0}).status_code == 404
    assert get(client, staff, cid)["ab_test"]["status"] == "testing"
    response = client.post(url, headers=staff, json={"winner": 1})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["ab_test"]["winner"] == 1
    assert client.post(url, headers=staff, json={"winner": 0}).status_code == 409
    make_due(cid)
    run_jobs(due_within=3600)  # the scheduled decision finds it decided
    data = get(client, staff, cid)
    assert data["status"] == "sent" and data["ab_test"]["winner"] == 1
    assert received_once_each(sink, 20)
    assert {m["subject"] for m in sink.messages()[10:]} == {"Subject B"}


def test_pause_during_the_test_and_the_wait(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer, backend: str,
) -> None:
    staff, cid = sent_with_a_test(client, api_token, run_jobs, 20)
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=staff).status_code == 202
    make_due(cid)
    # Paused: the automatic decision waits for the resume.
    assert watch()["ab_decided"] == 0
    run_jobs(due_within=3600)
    assert get(client, staff, cid)["ab_test"]["status"] == "testing"
    assert len(sink.messages()) == 10
    client.post(f"/api/v1/campaigns/{cid}/resume", headers=staff)
    assert watch()["ab_decided"] == 1
    run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    assert received_once_each(sink, 20)

    # Paused during the test itself, before the sample went: nothing goes; a staff
    # member may still decide while paused, and the resume sends sample and rest.
    if backend != "postgres":
        return  # (the in-process worker runs a batch the moment the start commits)
    sink.clear()
    other = create(client, staff, ab_test=AB)["id"]
    client.post(f"/api/v1/campaigns/{other}/send", headers=staff)
    start_campaign(db.session(), other)  # the start job, just before the pause
    assert client.post(f"/api/v1/campaigns/{other}/pause", headers=staff).status_code == 202
    run_jobs()
    assert sink.messages() == [] and get(client, staff, other)["ab_test"]["status"] == "testing"
    response = client.post(f"/api/v1/campaigns/{other}/ab/decide", headers=staff,
                           json={"winner": 1})
    assert response.status_code == 200
    run_jobs()
    assert sink.messages() == []
    client.post(f"/api/v1/campaigns/{other}/resume", headers=staff)
    run_jobs()
    assert get(client, staff, other)["status"] == "sent"
    assert received_once_each(sink, 20)


def test_cancel_during_the_wait_sends_nothing_more(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    staff, cid = sent_with_a_test(client, api_token, run_jobs, 20)
    assert client.post(f"/api/v1/campaigns/{cid}/cancel", headers=staff).status_code == 202
    make_due(cid)
    assert watch()["ab_decided"] == 0
    run_jobs(due_within=3600)
    decide = client.post(f"/api/v1/campaigns/{cid}/ab/decide", headers=staff,
                         json={"winner": 0})
    assert decide.status_code == 409 and "cancelled" in json.dumps(decide.get_json())
    data = get(client, staff, cid)
    assert data["status"] == "cancelled" and data["ab_test"]["status"] == "testing"
    assert len(sink.messages()) == 10
    db.session().rollback()
    held = db.session().scalars(select(Batch.status).where(Batch.campaign_id == cid)).all()
    assert held.count("held") == 2


def test_subjects_per_language_work_with_the_spanish_variant(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    subscribers(20, locale_es_every=2)
    staff = api_token("campaigner")
    subjects: list[Any] = [{"en": "Hello A", "es": "Hola A {{ first_name }}"}, "Both B"]
    cid = create(client, staff, variants={"es": {"subject": "Hola", "body": "Cuerpo"}},
                 ab_test={**AB, "subjects": subjects, "sample_percent": 50})["id"]
    assert get(client, staff, cid)["ab_test"]["subjects"] == subjects
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    groups = by_variant(cid)
    client.post(f"/api/v1/campaigns/{cid}/ab/decide", headers=staff, json={"winner": 0})
    run_jobs()
    messages = sink.messages()
    assert Counter(to(m) for m in messages) == Counter(
        f"person{i}@example.com" for i in range(20))
    for m in messages:
        i = int(to(m).removeprefix("person").split("@")[0])
        sid = int(m["custom_args"]["subscriber_id"])
        spanish = i % 2 == 0
        if sid in groups.get(1, []):
            assert m["subject"] == "Both B"
        else:
            assert m["subject"] == (f"Hola A First{i}" if spanish else "Hello A")
        assert ("Cuerpo" in m["text"]) == spanish


def test_a_campaign_without_a_test_is_unchanged(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    subscribers(12)
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    assert get(client, staff, cid)["ab_test"] is None
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    assert set(ledger(cid).values()) == {None}
    db.session().rollback()
    assert set(db.session().scalars(select(Batch.variant).where(Batch.campaign_id == cid))) == {
        None}
    assert len(sink.messages()) == 12


BAD_SETUPS: list[tuple[Any, str]] = [
    ("yes", "ab_test"),
    ([1, 2], "ab_test"),
    ({}, "subjects"),
    ({**AB, "subjects": ["only one"]}, "subjects"),
    ({**AB, "subjects": ["a", "b", "c", "d", "e", "f"]}, "subjects"),
    ({**AB, "subjects": "ab"}, "subjects"),
    ({**AB, "subjects": ["a", 5]}, "subjects"),
    ({**AB, "subjects": ["a", None]}, "subjects"),
    ({**AB, "subjects": ["a", ""]}, "subjects"),
    ({**AB, "subjects": ["a", "   "]}, "subjects"),
    ({**AB, "subjects": ["a", "x" * 301]}, "subjects"),
    ({**AB, "subjects": ["a", "line\nbreak"]}, "subjects"),
    ({**AB, "subjects": ["a", "nul\x00"]}, "subjects"),
    ({**AB, "subjects": ["a", "bidi\u202eevil"]}, "subjects"),
    ({**AB, "subjects": ["a", {"en": "x"}]}, "subjects"),
    ({**AB, "subjects": ["a", {"en": "x", "es": "y", "fr": "z"}]}, "subjects"),
    ({**AB, "subjects": ["a", {"en": "x", "es": {"deep": "y"}}]}, "subjects"),
    ({**AB, "subjects": ["a", ["x"]]}, "subjects"),
    ({**AB, "subjects": ["a", "{{ 1/0 }}"]}, "ab_test.subjects.1"),
    ({**AB, "subjects": ["a", {"en": "x", "es": "{% include 'x' %}"}]},
     "ab_test.subjects.1.es"),
    ({**AB, "sample_percent": 0}, "sample_percent"),
    ({**AB, "sample_percent": 51}, "sample_percent"),
    ({**AB, "sample_percent": "10"}, "sample_percent"),
    ({**AB, "sample_percent": 10.5}, "sample_percent"),
    ({**AB, "sample_percent": True}, "sample_percent"),
    ({**AB, "metric": "opens"}, "metric"),
    ({**AB, "metric": None}, "metric"),
    ({**AB, "wait_minutes": 0}, "wait_minutes"),
    ({**AB, "wait_minutes": -5}, "wait_minutes"),
    ({**AB, "wait_minutes": 10**18}, "wait_minutes"),
    ({**AB, "wait_minutes": "5"}, "wait_minutes"),
    ({**AB, "extra": 1}, "extra"),
]


@pytest.mark.parametrize(("setup", "field"), BAD_SETUPS)
def test_a_malformed_set_up_is_refused_naming_the_field(
    app: Flask, client: FlaskClient, api_token: Headers, setup: Any, field: str,
) -> None:
    staff = api_token("editor")
    payload = {"name": "T", "kind": "newsletter", "subject": "S", "body": "B",
               "lists": ["newsletter"], "ab_test": setup}
    response = client.post("/api/v1/campaigns", json=payload, headers=staff)
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    assert "ab_test" in errors or any(k.startswith("ab_test") for k in errors), errors
    assert field in json.dumps(errors), errors
    db.session().rollback()
    assert db.session().scalar(select(Campaign.id)) is None  # nothing stored
    # The same set-up on PATCH of a stored draft: refused too, the draft unchanged.
    cid = create(client, staff, ab_test=AB)["id"]
    patched = client.patch(f"/api/v1/campaigns/{cid}", json={"ab_test": setup}, headers=staff)
    assert patched.status_code == 422
    assert get(client, staff, cid)["ab_test"]["subjects"] == AB["subjects"]


def test_patch_replaces_or_removes_the_set_up(
    app: Flask, client: FlaskClient, api_token: Headers,
) -> None:
    staff = api_token("editor")
    cid = create(client, staff, ab_test=AB)["id"]
    partial = client.patch(f"/api/v1/campaigns/{cid}", headers=staff,
                           json={"ab_test": {"subjects": ["x", "y"]}})
    assert partial.status_code == 422  # a set-up is replaced whole
    new = {**AB, "subjects": ["x", "y", "z"], "wait_minutes": 5}
    response = client.patch(f"/api/v1/campaigns/{cid}", headers=staff, json={"ab_test": new})
    assert response.status_code == 200
    shown = response.get_json()["ab_test"]
    assert shown["subjects"] == ["x", "y", "z"] and shown["wait_minutes"] == 5
    assert shown["status"] is None and shown["winner"] is None
    assert [v["sent"] for v in shown["variants"]] == [0, 0, 0]
    response = client.patch(f"/api/v1/campaigns/{cid}", headers=staff, json={"ab_test": None})
    assert response.status_code == 200 and response.get_json()["ab_test"] is None


@pytest.mark.timeout(300)  # two worker processes started on a loaded machine
def test_a_worker_killed_during_the_decision_leaves_exactly_one_mail_each(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    backend: str, sink: SinkServer, signer: Signer, tmp_path: Path,
) -> None:
    """A real worker process is killed with SIGKILL while its decision transaction is
    under way (held at its UPDATE by a row lock this test takes): nothing of it remains,
    and the next worker decides and sends the rest, once each."""
    if backend != "postgres":
        pytest.skip("needs real worker processes on Redis")
    env = worker_env(app, sink.url, CAMPAIGN_BATCH_SIZE="5", CAMPAIGN_LEASE_SECONDS="2")
    staff, cid = sent_with_a_test(client, api_token, run_jobs, 60)
    groups = by_variant(cid)
    post_opens(client, signer, cid, groups[1][:3] + groups[0][:1])
    run_jobs()
    assert len(sink.messages()) == 30
    make_due(cid)
    log = tmp_path / "worker.log"
    engine = create_engine(env["DATABASE_URL"])
    worker: subprocess.Popen[bytes] | None = None
    try:
        with engine.connect() as lock:
            lock.execute(text("SELECT id FROM campaigns WHERE id = :id FOR UPDATE"),
                         {"id": cid})
            worker = start_worker(env, log)  # its start-up recovery pass decides
            deadline = time.monotonic() + 90  # (a loaded machine starts a worker slowly)
            with engine.connect() as probe:  # (a transaction sees one snapshot of the view)
                while not probe.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE campaigns SET %ab_status%'")).scalar_one():
                    probe.rollback()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            kill_worker(worker)
            lock.rollback()
        # The killed decision's transaction ends without a trace (its server session
        # aborts as soon as it finds the client gone).
        deadline = time.monotonic() + 10
        with engine.connect() as probe:
            while probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                    "'UPDATE campaigns SET %ab_status%' AND state <> 'idle' "
                    "AND datname = current_database()")).scalar_one():
                assert time.monotonic() < deadline
                probe.rollback()
                time.sleep(0.05)
    finally:
        if worker is not None:
            kill_worker(worker)
        engine.dispose()
    data = get(client, staff, cid)
    assert data["ab_test"]["status"] == "testing" and data["counts"]["sent"] == 30
    db.session().rollback()
    assert db.session().scalars(select(Batch.status).where(
        Batch.campaign_id == cid, Batch.variant.is_(None))).all() == ["held"] * 6
    assert len(sink.messages()) == 30

    survivor = start_worker(env, log)
    try:
        deadline = time.monotonic() + 40
        while get(client, staff, cid)["status"] != "sent":
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        stop_worker(survivor)
    data = get(client, staff, cid)
    assert data["ab_test"]["status"] == "decided" and data["ab_test"]["winner"] == 1
    assert data["counts"] == {"total": 60, "queued": 0, "sent": 60, "failed": 0, "skipped": 0}
    assert received_once_each(sink, 60)
    assert {m["subject"] for m in sink.messages()[30:]} == {"Subject B"}


def test_the_command_line_decides_too(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    staff, cid = sent_with_a_test(client, api_token, run_jobs, 10)
    runner = app.test_cli_runner()
    for args, message in [(["7"], "between 0 and 1"), (["x"], "not a valid integer")]:
        result = runner.invoke(args=["campaigns", "decide", str(cid), *args])
        assert result.exit_code != 0 and message in result.output, result.output
    result = runner.invoke(args=["campaigns", "decide", str(cid), "1"])
    assert result.exit_code == 0, result.output
    run_jobs()
    assert get(client, staff, cid)["status"] == "sent"
    assert {m["subject"] for m in sink.messages()[5:]} == {"Subject B"}
    result = runner.invoke(args=["campaigns", "decide", str(cid), "0"])
    assert result.exit_code != 0 and "already decided" in result.output


def test_two_deciders_at_once_decide_once(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    backend: str, sink: SinkServer,
) -> None:
    """A staff member's decision holds the campaign row; the automatic one, racing it,
    waits, then finds the test decided and changes nothing (no second release)."""
    if backend != "postgres":
        pytest.skip("two concurrent transactions (SQLite has one writer)")
    import threading

    from sqlalchemy.orm import Session

    from service.campaigns.abdecide import decide, decide_if_due
    from service.models import AuditRecord

    staff, cid = sent_with_a_test(client, api_token, run_jobs, 20)
    make_due(cid)
    engine = create_engine(app.extensions["settings"].database_url)
    results: list[bool] = []
    try:
        first = db.session()  # (the app's session: its commit sends the queued jobs)
        first.rollback()
        with Session(engine) as second:
            campaign = first.get(Campaign, cid)
            assert campaign is not None
            decide(first, campaign, 1, "staff:first")  # not committed yet

            def automatic() -> None:
                with app.app_context():
                    results.append(decide_if_due(second, cid))

            racer = threading.Thread(target=automatic)
            racer.start()
            racer.join(1.0)
            assert racer.is_alive() and not results  # waiting on the row
            first.commit()
            racer.join(30)
            assert results == [False]
    finally:
        engine.dispose()
    run_jobs()
    data = get(client, staff, cid)
    assert data["ab_test"]["winner"] == 1 and data["status"] == "sent"
    db.session().rollback()
    decisions = db.session().scalars(select(AuditRecord.actor).where(
        AuditRecord.action == "campaign.ab_decide")).all()
    assert decisions == ["staff:first"]
    assert received_once_each(sink, 20)
