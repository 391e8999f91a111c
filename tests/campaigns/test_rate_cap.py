"""Send-rate caps: a campaign's `max_per_minute` and the global `SEND_MAX_PER_MINUTE`,
checked at the sink over HTTP with real workers (the window is shortened to seconds with
`SEND_RATE_WINDOW_SECONDS`: the same cap, per that window)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sendgrid_sink.server import SinkServer
from service.campaigns import ratecap
from tests.factories import subscribers
from tests.support import start_worker, worker_env

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """Batches of 5 and a rate window of one second."""
    app = make_app(campaign_batch_size=5, campaign_lease_seconds=2,
                   send_rate_window_seconds=1.0)
    with app.app_context():
        yield app


def most_in_any_window(sink: SinkServer, window: float, *, campaign: int | None = None) -> int:
    """The most mails the sink received within any `window` seconds (sliding)."""
    times = sorted(m["received_at"] for m in sink.messages()
                   if campaign is None or _campaign_of(m) == campaign)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def _campaign_of(message: dict[str, Any]) -> int:
    return int(message["custom_args"]["campaign_id"])


# ---------------------------------------------------------------- input


@pytest.mark.parametrize("value", [0, -1, 100_001, 10**30, "10", 1.5, True, [], {"n": 5},
                                   "\u202e5", "5\x00"])
def test_max_per_minute_refuses_what_is_not_a_sensible_count(
    app: Flask, client: FlaskClient, api_token: Headers, value: Any,
) -> None:
    staff = api_token("editor")
    payload = {"name": "N", "kind": "newsletter", "subject": "S", "body": "B",
               "lists": ["newsletter"], "max_per_minute": value}
    answer = client.post("/api/v1/campaigns", json=payload, headers=staff)
    assert answer.status_code == 422 and "max_per_minute" in answer.get_json()["errors"]
    cid = create(client, staff)["id"]
    answer = client.patch(f"/api/v1/campaigns/{cid}", json={"max_per_minute": value},
                          headers=staff)
    assert answer.status_code == 422 and "max_per_minute" in answer.get_json()["errors"]
    assert get(client, staff, cid)["max_per_minute"] is None


def test_max_per_minute_is_kept_changed_and_removed(
    app: Flask, client: FlaskClient, api_token: Headers,
) -> None:
    staff = api_token("editor")
    cid = create(client, staff, max_per_minute=1200)["id"]
    assert get(client, staff, cid)["max_per_minute"] == 1200
    client.patch(f"/api/v1/campaigns/{cid}", json={"name": "renamed"}, headers=staff)
    assert get(client, staff, cid)["max_per_minute"] == 1200
    client.patch(f"/api/v1/campaigns/{cid}", json={"max_per_minute": None}, headers=staff)
    assert get(client, staff, cid)["max_per_minute"] is None


# ---------------------------------------------------------------- the limiter itself


def test_the_limiter_grants_at_most_the_cap_per_window(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(send_rate_window_seconds=1.0, send_max_per_minute=7)
    with app.app_context():
        first = ratecap.acquire(1, 5, 3)
        assert first.granted == 3
        assert ratecap.acquire(1, 5, 4).granted == 2  # the campaign's cap: 5
        other = ratecap.acquire(2, None, 4)
        assert other.granted == 2  # the global cap: 7 over both campaigns
        nothing = ratecap.acquire(2, None, 1)
        assert nothing.granted == 0 and 0 < nothing.retry_after <= 1.0
        # In flight, a grant counts until its request ends, then for a window.
        time.sleep(1.1)
        assert ratecap.acquire(2, None, 1).granted == 0
        for grant in (first, other):
            ratecap.settle(grant)
        assert ratecap.acquire(2, None, 9).granted == 0  # settled just now
        time.sleep(1.1)
        # (the second grant of campaign 1 was never settled: it still counts in flight)
        assert ratecap.acquire(3, None, 9).granted == 5
        assert ratecap.acquire(4, 50, 1).granted == 0
        assert ratecap.UNLIMITED.granted == -1


# ---------------------------------------------------------------- in one process


def test_a_capped_campaign_never_exceeds_its_cap_in_any_window(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    """Batches of 5 with a cap of 4 per second: every request is cut to what the cap
    grants, the rest is deferred and sent later, nobody twice."""
    if True:
        subscribers(13)
        staff = api_token("campaigner")
        cid = create(client, staff, max_per_minute=4)["id"]
        started = time.monotonic()
        client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
        deadline = time.monotonic() + 30
        while get(client, staff, cid)["status"] != "sent" and time.monotonic() < deadline:
            run_jobs()  # (deferred batches: in-process timers, or RQ jobs promoted when due)
            time.sleep(0.05)
        data = get(client, staff, cid)
        assert data["status"] == "sent" and data["counts"]["sent"] == 13
        assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: 13}
        assert most_in_any_window(sink, 1.0) <= 4
        assert time.monotonic() - started >= 3.0  # 13 at 4 per second: 4 windows


# ---------------------------------------------------------------- two worker processes


@pytest.fixture
def workers(app: Flask, backend: str, sink: SinkServer,
            tmp_path: Path) -> Iterator[Callable[..., None]]:
    """start(n, **env): n worker.py processes on this test's database and Redis."""
    if backend != "postgres":
        pytest.skip("needs real worker processes on Redis")
    base = worker_env(app, sink.url, CAMPAIGN_BATCH_SIZE="8", CAMPAIGN_LEASE_SECONDS="5")
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "workers.log"

    def start(n: int, **env: str) -> None:
        started.extend(start_worker({**base, **env}, log) for _ in range(n))

    yield start
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in started:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _wait_sent(client: FlaskClient, staff: dict[str, str], cid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while get(client, staff, cid)["status"] != "sent" and time.monotonic() < deadline:
        time.sleep(0.1)


def test_two_workers_keep_a_campaign_cap_and_an_alert_does_not_wait_behind_it(
    client: FlaskClient, api_token: Headers, sink: SinkServer,
    workers: Callable[..., None],
) -> None:
    subscribers(60)  # the newsletter: batches of 8, at most 10 per 2 s → ≥ 10 s
    subscribers(10, list_slug="action-alerts", prefix="alert")
    staff = api_token("campaigner")
    newsletter = create(client, staff, max_per_minute=10)["id"]
    alert = create(client, staff, kind="alert", lists=["action-alerts"])["id"]
    workers(2, SEND_RATE_WINDOW_SECONDS="2")
    client.post(f"/api/v1/campaigns/{newsletter}/send", headers=staff)
    deadline = time.monotonic() + 30
    while not sink.messages() and time.monotonic() < deadline:
        time.sleep(0.05)
    alert_sent = time.time()
    client.post(f"/api/v1/campaigns/{alert}/send", headers=staff)
    _wait_sent(client, staff, alert, 30)
    assert get(client, staff, alert)["status"] == "sent"
    _wait_sent(client, staff, newsletter, 90)
    data = get(client, staff, newsletter)
    assert data["status"] == "sent", data
    assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: 70}
    assert most_in_any_window(sink, 2.0, campaign=newsletter) <= 10
    newsletter_times = [m["received_at"] for m in sink.messages()
                        if _campaign_of(m) == newsletter]
    assert max(newsletter_times) - min(newsletter_times) >= 10.0
    # The alert did not wait behind the capped newsletter: it was all out long before the
    # newsletter's last mail, within seconds of its send.
    alert_done = max(m["received_at"] for m in sink.messages() if _campaign_of(m) == alert)
    assert alert_done - alert_sent < 8.0
    assert alert_done < max(newsletter_times) - 2.0


def test_two_workers_keep_the_global_cap_over_two_campaigns(
    client: FlaskClient, api_token: Headers, sink: SinkServer,
    workers: Callable[..., None],
) -> None:
    subscribers(24)
    subscribers(24, list_slug="action-alerts", prefix="alert")
    staff = api_token("campaigner")
    first = create(client, staff)["id"]
    second = create(client, staff, kind="alert", lists=["action-alerts"])["id"]
    workers(2, SEND_RATE_WINDOW_SECONDS="2", SEND_MAX_PER_MINUTE="12")
    client.post(f"/api/v1/campaigns/{first}/send", headers=staff)
    client.post(f"/api/v1/campaigns/{second}/send", headers=staff)
    _wait_sent(client, staff, first, 60)
    _wait_sent(client, staff, second, 60)
    assert get(client, staff, first)["status"] == get(client, staff, second)["status"] == "sent"
    assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: 48}
    assert most_in_any_window(sink, 2.0) <= 12
