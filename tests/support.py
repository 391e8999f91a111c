"""What the fixtures and the test modules share that is not a fixture: the backends the
run may use, and driving the command line.

`TEST_DATABASE_URL` (a PostgreSQL server URL) and `TEST_REDIS_URL` add the PostgreSQL +
Redis backend; with `CI=true` both are required.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


def backends() -> list[str]:
    return ["sqlite", "postgres"] if (PG_URL and REDIS_URL) else ["sqlite"]


def run_cli(app: Flask, *args: str) -> Any:
    """Run a `flask` command of the app (exceptions propagate) and return its result."""
    result = app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
    return result
