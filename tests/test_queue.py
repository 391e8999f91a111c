"""The embedded mode's in-process worker: its timers and its job thread never die
silently; a failure is logged and the work carries on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from service.queue import InProcessWorker, JobRequest

RAN: list[str] = []


def record(label: str) -> None:
    RAN.append(label)


def leave() -> None:
    raise SystemExit(3)


@pytest.fixture
def worker(app: Flask) -> Iterator[InProcessWorker]:
    RAN.clear()
    local = InProcessWorker(app)
    yield local
    for timer in list(local.timers):
        timer.cancel()


def test_a_job_scheduled_centuries_ahead_waits_without_killing_its_timer(
    worker: InProcessWorker,
) -> None:
    far = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    worker.submit(JobRequest(f"{__name__}.record", ("far",), at=far))
    worker.submit(JobRequest(f"{__name__}.record", ("soon",),
                             at=datetime.now(UTC) + timedelta(seconds=0.3)))
    time.sleep(1.0)  # an unhandled exception in a thread fails the test (pytest warns)
    assert RAN == ["soon"]
    (timer,) = worker.timers
    assert timer.is_alive() and worker.pending() == 1


def test_a_timer_that_fails_to_queue_its_job_logs_and_tries_again(
    worker: InProcessWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("service.queue.TIMER_RESTART_SECONDS", 0.2)
    submit = worker.submit
    failures = iter([RuntimeError("queue unavailable")])

    def flaky(request: JobRequest, attempt: int = 0) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        submit(request, attempt)

    worker.submit(JobRequest(f"{__name__}.record", ("late",),
                             at=datetime.now(UTC) + timedelta(seconds=0.1)))
    monkeypatch.setattr(worker, "submit", flaky)
    deadline = time.monotonic() + 10
    while RAN != ["late"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RAN == ["late"]
    assert "queue unavailable" in caplog.text and "starting it again" in caplog.text
    worker.drain()
    assert worker.pending() == 0


def test_the_job_thread_logs_a_crash_and_carries_on(
    worker: InProcessWorker, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    worker.submit(JobRequest(f"{__name__}.no_such_job", ()))
    worker.submit(JobRequest(f"{__name__}.leave", ()))
    worker.submit(JobRequest(f"{__name__}.record", ("after",)))
    worker.drain(timeout=10)
    assert RAN == ["after"]
    assert "no_such_job" in caplog.text and "SystemExit" in caplog.text
    thread = worker.thread
    assert thread is not None and thread.is_alive() and threading.active_count() > 1
