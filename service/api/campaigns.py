"""Staff REST API for campaigns (/api/v1/campaigns…): thin views over the domain modules.

editor: create and edit drafts; campaigner: send, schedule, pause, resume, cancel, test.
Illegal state changes answer 409, bad input 422 (`{"errors": {field: [messages]}}`).
"""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import abort
from sqlalchemy import select

from .. import db
from ..auth import require_role
from ..campaigns.abdecide import AbRefused, BadWinner, decide
from ..campaigns.abtest import summary as ab_summary
from ..campaigns.audience import audience_count, effective_segment, is_frozen
from ..campaigns.drafts import (
    CampaignIn,
    CampaignPatch,
    DecideIn,
    IllegalTransition,
    LocalHourWithTest,
    NoLists,
    NotADraft,
    SendIn,
    TestIn,
    UnknownLists,
    Unrenderable,
    act,
    create_draft,
    edit_draft,
    queue_test,
)
from ..campaigns.saved import UnknownSegment
from ..campaigns.segments import SegmentError
from ..campaigns.sending import counts, schedule
from ..extensions import ApiBlueprint
from ..models import Campaign, CampaignStatus, Role
from .refusals import found, refused_as
from .segments import refuse_segment

blp = ApiBlueprint("campaigns_api", __name__, url_prefix="/api/v1", description="Campaigns")



def campaign_out(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "kind": c.kind.value, "status": c.status.value,
        "status_reason": c.status_reason, "subject": c.subject, "preheader": c.preheader,
        "body": c.body, "format": c.format.value, "lists": [ml.slug for ml in c.lists],
        # `segment` is the one the audience uses: while a draft or scheduled campaign
        # follows a saved segment (`segment_id`), that segment as it is now; once
        # sending starts, the copy the audience was frozen with.
        "segment": effective_segment(db.session(), c), "segment_id": c.segment_id,
        "segment_frozen": is_frozen(c),
        "variants": c.variants, "source_code": c.source_code,
        "archive": c.archive,
        "send_at": c.send_at.isoformat() if c.send_at else None,
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "finished_at": c.finished_at.isoformat() if c.finished_at else None,
        "created_by": c.created_by,
        "counts": counts(db.session(), c.id),
        "ab_test": ab_summary(db.session(), c),
        # Call to action and circuit breaker
        "action_url": c.action_url,
        "paused_reason": (c.status_reason or None) if c.status == CampaignStatus.paused else None,
        # local-hour delivery and the send-rate cap
        "send_at_local": c.send_at_local or None,
        "max_per_minute": c.max_per_minute,
        "schedule": schedule(db.session(), c),
    }


def _get(campaign_id: int) -> Campaign:
    return found(db.session().get(Campaign, campaign_id), "No such campaign.")


@blp.route("/campaigns", methods=["POST"])
@require_role(Role.editor)
@blp.arguments(CampaignIn)
def create_campaign(data: dict[str, Any]) -> Any:
    session = db.session()
    with refused_as(UnknownLists, 422, "lists"), refused_as(UnknownSegment, 422, "segment_id"):
        try:
            campaign = create_draft(session, data, g.actor)
        except SegmentError as exc:
            refuse_segment(exc)
    session.commit()
    return campaign_out(campaign), 201


@blp.route("/campaigns", methods=["GET"])
@require_role(Role.viewer)
def list_campaigns() -> Any:
    rows = db.session().scalars(select(Campaign).order_by(Campaign.id.desc()).limit(200))
    return [campaign_out(c) for c in rows]


@blp.route("/campaigns/<int:campaign_id>", methods=["GET"])
@require_role(Role.viewer)
def get_campaign(campaign_id: int) -> Any:
    return campaign_out(_get(campaign_id))


@blp.route("/campaigns/<int:campaign_id>", methods=["PATCH"])
@require_role(Role.editor)
@blp.arguments(CampaignPatch)
def edit_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    with refused_as(NotADraft, 409), refused_as(UnknownLists, 422, "lists"), \
            refused_as(UnknownSegment, 422, "segment_id"):
        try:
            edit_draft(session, campaign, data, g.actor)
        except SegmentError as exc:
            refuse_segment(exc)
    session.commit()
    return campaign_out(campaign)


@blp.route("/campaigns/<int:campaign_id>/audience", methods=["GET"])
@require_role(Role.viewer)
def get_audience(campaign_id: int) -> Any:
    return {"count": audience_count(db.session(), _get(campaign_id))}


def _act(campaign_id: int, action: str, **kwargs: Any) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    with refused_as(NoLists, 422, "lists"), refused_as(IllegalTransition, 409), \
            refused_as(LocalHourWithTest, 422, "send_at_local"):
        act(session, campaign, action, g.actor, kwargs.get("send_at"),
            kwargs.get("send_at_local"))
    session.commit()
    return campaign_out(campaign), 202


@blp.route("/campaigns/<int:campaign_id>/send", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(SendIn)
def send_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    return _act(campaign_id, "send", send_at=data.get("send_at"),
                send_at_local=data.get("send_at_local"))


def _action_route(action: str) -> None:
    """`POST /campaigns/<id>/<action>` (endpoint `<action>_campaign`) for a bare action."""

    @blp.route(f"/campaigns/<int:campaign_id>/{action}", methods=["POST"],
               endpoint=f"{action}_campaign")
    @require_role(Role.campaigner)
    def view(campaign_id: int) -> Any:
        return _act(campaign_id, action)


for _action in ("pause", "resume", "cancel"):
    _action_route(_action)


@blp.route("/campaigns/<int:campaign_id>/test", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(TestIn)
def test_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    try:
        queue_test(session, campaign, data["emails"], g.actor)
    except Unrenderable as exc:
        session.rollback()
        abort(422, errors={name: [message] for name, message in exc.errors.items()})
    session.commit()
    return {"status": "queued", "emails": data["emails"]}, 202



# ---------------------------------------------------------------- A/B subject test


@blp.route("/campaigns/<int:campaign_id>/ab/decide", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(DecideIn)
def decide_ab_test(data: dict[str, Any], campaign_id: int) -> Any:
    """Decide the A/B test now: the subject `winner` (an index) goes to the rest."""
    session = db.session()
    campaign = _get(campaign_id)
    with refused_as(AbRefused, 409), refused_as(BadWinner, 422, "winner"):
        decide(session, campaign, data["winner"], g.actor)
    session.commit()
    return campaign_out(campaign), 200
