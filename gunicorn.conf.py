"""gunicorn settings for the web process (`Procfile`; gunicorn also reads this file by
itself when started from the project root). Options given on the command line win."""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    """Once a worker has loaded the app: `service.settle_process` (the ZIP table, then the
    loaded app out of the garbage collector's passes)."""
    from service import settle_process

    settle_process()
