"""Smoke runs of the benches (small sizes, as subprocesses): they must still work and clean up.

They need PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL), so CI runs them and a
plain `make test` skips them. Each takes well under 30 s on a quiet machine (the two that
run a campaign alongside something else have more time for a loaded one); the full-size
figures are in docs/benchmarks.md. Ports 18350-18357 are kept apart from the benches' own (183[0-4]x).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from service import PROJECT_ROOT
from tests.support import PG_URL, REDIS_URL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PG_URL and REDIS_URL),
                       reason="benches need TEST_DATABASE_URL and TEST_REDIS_URL"),
]


def run_bench(tag: str, script: str, *args: str, timeout: float = 60) -> str:
    """Run bench/SCRIPT; on a timeout SIGTERM it (its `finally` blocks stop its subprocesses
    and drop its database) before giving up. Then check that its scratch database (named
    after the bench's pid) is gone."""
    env = {**os.environ, "BENCH_DATABASE_URL": PG_URL, "BENCH_REDIS_URL": REDIS_URL}
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "bench" / script), *args],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"{script} did not finish in {timeout} s:\n{output}")
    assert proc.returncode == 0, output
    assert not database_exists(f"actionlist_bench_{tag}_{proc.pid}"), "scratch database left"
    return output


def database_exists(name: str) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                             {"n": name}).first()
    engine.dispose()
    return found is not None


def test_signup_bench_small():
    out = run_bench("signup", "signup.py", "--requests", "300", "--clients", "4",
                    "--workers", "2", "--port", "18350")
    assert "POST /api/v1/subscriptions" in out and "GET /healthz (reference)" in out
    assert "lost signups: 0" in out and "MISMATCH" not in out, out


def test_campaign_bench_small():
    out = run_bench("campaign", "campaign.py", "3000", "--sink-requests", "5",
                    "--port", "18352")
    assert "recipients/s" in out and "sink-only limit" in out and "worker peak RSS" in out
    assert "every recipient sent exactly once" in out, out


def test_chaos_bench_small():
    out = run_bench("chaos", "chaos.py", "3000", "--batch-size", "100", "--kills", "3",
                    "--slow-ms", "100", "--min-gap", "0.3", "--max-gap", "0.8",
                    "--port", "18353")
    assert "lost: 0" in out and "OK: nobody lost" in out, out
    assert "kill-to-resume" in out, out


@pytest.mark.timeout(300)
def test_priority_bench_small():
    out = run_bench("priority", "priority.py", "--newsletter", "20000", "--alert", "2000",
                    "--port", "18355", timeout=240)
    assert "alert during / alert alone (means)" in out and "target ≤ 1.5" in out, out
    assert "OK: every audience received exactly once" in out and "MISMATCH" not in out, out


@pytest.mark.timeout(300)
def test_signup_during_campaign_bench_small():
    # A slow sink (0.2 s a request) keeps a 20-batch campaign sending through the phase;
    # the idle phase's confirmations go first (their queue does), so each one costs 0.1 s.
    out = run_bench("signup", "signup.py", "--during-campaign", "--requests", "50",
                    "--clients", "4", "--workers", "2", "--campaign-size", "20000",
                    "--sink-slow-ms", "200", "--niceness", "5", "--port", "18356",
                    timeout=240)
    assert "campaign: POST signups" in out and "idle: POST signups" in out, out
    assert "signups during / idle" in out and "still sending" in out, out
    assert "lost signups: 0" in out and "MISMATCH" not in out, out


def test_audience_bench_small():
    out = run_bench("audience", "audience.py", "3000", "--explain", timeout=180)
    assert "newsletter, attr+tag+county+not_opened" in out
    assert "ratio segment / plain" in out and "ratio segment / list only" in out
    assert "Execution Time" in out  # the count's EXPLAIN ANALYZE is printed


def test_events_bench_small():
    out = run_bench("events", "events.py", "1000", "--batch", "1000", "--port", "18354")
    assert "reference: COPY of the same 3 batches (2,361 events)" in out, out
    assert "ingestion: 2,361 events" in out and "end to end" in out, out
    assert "checks=ok" in out, out
