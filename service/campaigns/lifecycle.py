"""The campaign state machine, enforced in one place, with an audit record per action.

    draft ──schedule──▶ scheduled ──start──▶ sending ──finish──▶ sent
      │                   │                  │   ▲
      │                   │                pause resume
      │                   │                  ▼   │
      └──── cancel ───────┴──── cancel ──── paused ──cancel──▶ cancelled
                                              (start/freeze errors → failed)

Every change is a conditional UPDATE (`WHERE status IN (allowed sources)`), so two staff
members or a staff member and a worker racing on the same campaign cannot both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..audit import record
from ..db import utcnow
from ..models import Campaign, CampaignStatus

S = CampaignStatus

# action -> (allowed source states, target state)
TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "schedule": (frozenset({S.draft}), S.scheduled),
    "unschedule": (frozenset({S.scheduled}), S.draft),
    "start": (frozenset({S.scheduled}), S.sending),
    "pause": (frozenset({S.sending}), S.paused),
    "resume": (frozenset({S.paused}), S.sending),
    "cancel": (frozenset({S.draft, S.scheduled, S.sending, S.paused}), S.cancelled),
    "finish": (frozenset({S.sending}), S.sent),
    "fail": (frozenset({S.scheduled, S.sending, S.paused}), S.failed),
}


class IllegalTransition(Exception):
    """The campaign is not in a state that allows this action (HTTP 409)."""

    def __init__(self, action: str, current: CampaignStatus) -> None:
        super().__init__(f"Cannot {action} a campaign that is {current.value}.")
        self.action = action
        self.current = current


def audit(session: Session, actor: str, action: str, campaign_id: int, **detail: Any) -> None:
    """Audit `action` on a campaign (logged as `campaign.<action>`)."""
    record(session, actor=actor, action=f"campaign.{action}", object_type="campaign",
           object_id=campaign_id, detail=detail)


def transition(
    session: Session,
    campaign_id: int,
    action: str,
    actor: str,
    *,
    reason: str = "",
    values: dict[str, Any] | None = None,
    only_if: Any = None,
) -> bool:
    """Move the campaign if its current state allows `action`; False when it did not.

    Flushes but does not commit: the caller commits together with its own work (and the
    jobs it queued with `enqueue_after_commit`).
    """
    sources, target = TRANSITIONS[action]
    extra: dict[str, Any] = dict(values or {})
    if action == "start":
        extra.setdefault("started_at", utcnow())
    if action in ("finish", "cancel", "fail"):
        extra.setdefault("finished_at", utcnow())
    result = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(list(sources)))
        .where(*([only_if] if only_if is not None else []))
        .values(status=target, status_reason=reason[:2000], updated_at=utcnow(), **extra)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    audit(session, actor, action, campaign_id, **({"reason": reason} if reason else {}))
    return True


def require_transition(
    session: Session, campaign: Campaign, action: str, actor: str, **kwargs: Any
) -> None:
    """`transition` for staff actions: raise IllegalTransition instead of returning False."""
    if not transition(session, campaign.id, action, actor, **kwargs):
        session.refresh(campaign)
        raise IllegalTransition(action, campaign.status)
    session.refresh(campaign)
