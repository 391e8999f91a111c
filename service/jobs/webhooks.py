"""Jobs of the SendGrid Event Webhook."""

from __future__ import annotations

from .. import db
from ..webhooks import effects


def process_events() -> int:
    """Apply every stored, unprocessed event (suppressions, deliveries, statistics)."""
    return effects.process_pending_events(db.session())
