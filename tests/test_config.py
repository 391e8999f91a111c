"""Settings: production refuses a signing key anyone could guess or brute-force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import PROJECT_ROOT
from service.config import DEV_SECRET_KEY, MIN_SECRET_KEY_BYTES, ConfigError, Settings

GOOD_KEY = "k" * MIN_SECRET_KEY_BYTES


def production(**env: str) -> Settings:
    return Settings.from_env(env)


@pytest.mark.parametrize("key", [
    "a",
    DEV_SECRET_KEY,
    "x" * (MIN_SECRET_KEY_BYTES - 1),
    # 16 characters but 32 bytes of UTF-8 would pass a byte count: counted in bytes, 31 fail.
    "é" * 15 + "x",
    " " * 40,
])
def test_production_refuses_a_weak_secret_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        production(SECRET_KEY=key).resolved(str(tmp_path))


def test_production_refuses_a_weak_fallback_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY_FALLBACKS"):
        production(SECRET_KEY=GOOD_KEY, SECRET_KEY_FALLBACKS="old").resolved(str(tmp_path))


def test_production_accepts_a_long_random_key(tmp_path: Path) -> None:
    resolved = production(SECRET_KEY=GOOD_KEY,
                          SECRET_KEY_FALLBACKS="o" * 40).resolved(str(tmp_path))
    assert resolved.secret_key == GOOD_KEY


def test_development_keeps_its_key(tmp_path: Path) -> None:
    assert production(ACTIONLIST_DEV="1").resolved(str(tmp_path)).secret_key == DEV_SECRET_KEY


def test_the_service_does_not_start_with_a_weak_key(tmp_path: Path) -> None:
    """The real entry point, as gunicorn or the worker would start it: a clear refusal."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"FLASK_DEBUG", "ACTIONLIST_DEV", "SECRET_KEY_FALLBACKS"}}
    env.update(SECRET_KEY="a", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    result = subprocess.run(
        [sys.executable, "-c", "from service import create_app; create_app()"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes" in result.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "20", "1e3", "5\u202e", "9" * 5000, "0x5"])
def test_worker_niceness_refuses_anything_but_0_to_19(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="WORKER_NICENESS"):
        production(SECRET_KEY=GOOD_KEY, WORKER_NICENESS=value).resolved(str(tmp_path))


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("0", 0), (" 10 ", 10),
                                                 ("19", 19)])
def test_worker_niceness_is_read(tmp_path: Path, value: str | None, expected: int) -> None:
    env = {"SECRET_KEY": GOOD_KEY} | ({} if value is None else {"WORKER_NICENESS": value})
    assert production(**env).resolved(str(tmp_path)).worker_niceness == expected


def test_an_override_out_of_range_is_refused(tmp_path: Path) -> None:
    settings = production(SECRET_KEY=GOOD_KEY).with_overrides({"worker_niceness": 25})
    with pytest.raises(ConfigError, match="WORKER_NICENESS"):
        settings.resolved(str(tmp_path))


def test_the_worker_lowers_its_priority_by_the_setting(tmp_path: Path) -> None:
    """In a child process: a niceness, once raised, cannot be lowered again."""
    code = ("import os, worker; before = os.nice(0); worker.lower_priority(7); "
            "worker.lower_priority(0); print(os.nice(0) - before)")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "7"
