"""The audit log: who did what to which object, written one way wherever it happens.

Staff pages, the API, the CLI and the subscriber's own erasure all append here, so the
log reads the same whichever door a change came through. Values are cut to the
columns' sizes: an unusually long actor (a staff address) must not make the change it
describes fail on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .models import AuditRecord

ACTOR_MAX = 200
ACTION_MAX = 60
OBJECT_TYPE_MAX = 40
OBJECT_ID_MAX = 40


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: object = "",
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Add an audit record to `session`; it is committed with the change it describes."""
    row = AuditRecord(
        actor=str(actor)[:ACTOR_MAX],
        action=action[:ACTION_MAX],
        object_type=object_type[:OBJECT_TYPE_MAX],
        object_id=str(object_id)[:OBJECT_ID_MAX],
        detail=dict(detail or {}),
    )
    session.add(row)
    return row
