"""Jobs of the SendGrid Event Webhook."""

from __future__ import annotations

from .. import db
from ..campaigns import breaker
from ..webhooks import effects, ingest


def process_events() -> int:
    """Apply every stored, unprocessed event (suppressions, deliveries, statistics), and
    let the circuit breaker look at the campaigns whose figures changed."""
    return effects.process_pending_events(db.session(), after_chunk=breaker.check)


def prune_event_keys() -> int:
    """Forget the deduplication keys of events older than SendGrid's retries."""
    return ingest.prune_keys(db.session())
