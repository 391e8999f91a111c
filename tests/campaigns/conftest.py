"""Campaign tests use batches of 5 so that a few dozen recipients make several batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_app(campaign_batch_size=5, campaign_lease_seconds=2)
    with app.app_context():
        yield app


@pytest.fixture
def run_some(app: Flask, backend: str) -> Callable[[int], None]:
    """Run at most `n` jobs with a real RQ worker (PostgreSQL + Redis backend only)."""
    if backend != "postgres":
        pytest.skip("needs RQ on Redis to stop between jobs")

    def run(n: int) -> None:
        app.extensions["queue"].make_worker().work(burst=True, max_jobs=n)

    return run
