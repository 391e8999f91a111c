"""gunicorn settings for the web process (`Procfile`; gunicorn also reads this file by
itself when started from the project root). Options given on the command line win."""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Once a worker has loaded the app: build the ZIP table now rather than in the first
    signup that needs it, then take everything loaded so far out of the cyclic garbage
    collector's passes (`gc.freeze`). Without it every full pass re-scans the app's
    ~170,000 long-lived objects, and a request that allocates many (an Event Webhook
    batch parses into 5,000 dicts) triggers such passes: 33.4 ms per 5,000-event batch
    instead of 26.0 (`docs/benchmarks.md`)."""
    from service.postal import warm

    warm()
    gc.freeze()
