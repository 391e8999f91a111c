"""Staff REST API for campaigns (/api/v1/campaigns…): thin views over the domain modules.

editor: create and edit drafts; campaigner: send, schedule, pause, resume, cancel, test.
Illegal state changes answer 409, bad input 422 (`{"errors": {field: [messages]}}`).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import Flask, g
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from .. import db
from ..auth import require_role
from ..models import Campaign, CampaignKind, ContentFormat, MailingList, Role
from ..queue import enqueue_after_commit, task_queue
from .audience import audience_count
from .lifecycle import IllegalTransition, audit, require_transition
from .render import ContentError, check_template
from .sending import counts, request_send, resume, send_test

blp = Blueprint("campaigns_api", __name__, url_prefix="/api/v1", description="Campaigns")

US_STATES = 2


class SegmentIn(Schema):
    states = fields.List(fields.String(validate=validate.Length(equal=US_STATES)),
                         load_default=list)
    postal_prefixes = fields.List(fields.String(validate=validate.Length(min=1, max=10)),
                                  load_default=list)
    locales = fields.List(fields.String(validate=validate.OneOf(["en", "es"])), load_default=list)


class VariantIn(Schema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300))
    body = fields.String(required=True, validate=validate.Length(min=1))


class VariantsIn(Schema):
    es = fields.Nested(VariantIn)


class CampaignIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in CampaignKind]))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300))
    preheader = fields.String(load_default="", validate=validate.Length(max=300))
    body = fields.String(required=True, validate=validate.Length(min=1))
    format = fields.String(load_default="markdown",
                           validate=validate.OneOf([f.value for f in ContentFormat]))
    lists = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    segment = fields.Nested(SegmentIn, load_default=dict)
    variants = fields.Nested(VariantsIn, load_default=dict)
    source_code = fields.String(load_default="", validate=validate.Length(max=100))

    @validates_schema
    def _templates(self, data: dict[str, Any], **_: Any) -> None:
        sources = {"subject": data.get("subject"), "body": data.get("body")}
        for key, value in (data.get("variants") or {}).get("es", {}).items():
            sources[f"variants.es.{key}"] = value
        for field_name, source in sources.items():
            if source is None:
                continue
            try:
                check_template(source)
            except ContentError as exc:
                raise ValidationError(str(exc), field_name) from exc


class CampaignPatch(CampaignIn):
    class Meta:
        partial = True


class SendIn(Schema):
    send_at = fields.AwareDateTime(load_default=None, default_timezone=UTC)


class TestIn(Schema):
    emails = fields.List(fields.Email(), required=True, validate=validate.Length(min=1, max=20))


def campaign_out(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "kind": c.kind.value, "status": c.status.value,
        "status_reason": c.status_reason, "subject": c.subject, "preheader": c.preheader,
        "body": c.body, "format": c.format.value, "lists": [ml.slug for ml in c.lists],
        "segment": c.segment, "variants": c.variants, "source_code": c.source_code,
        "send_at": c.send_at.isoformat() if c.send_at else None,
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "finished_at": c.finished_at.isoformat() if c.finished_at else None,
        "created_by": c.created_by,
        "counts": counts(db.session(), c.id),
    }


def _lists(slugs: list[str]) -> list[MailingList]:
    found = list(db.session().scalars(select(MailingList).where(MailingList.slug.in_(slugs))))
    missing = sorted(set(slugs) - {ml.slug for ml in found})
    if missing:
        abort(422, errors={"lists": [f"Unknown list: {', '.join(missing)}"]})
    return found


def _get(campaign_id: int) -> Campaign:
    campaign = db.session().get(Campaign, campaign_id)
    if campaign is None:
        abort(404, message="No such campaign.")
    assert campaign is not None
    return campaign


def _apply(campaign: Campaign, data: dict[str, Any]) -> None:
    for key in ("name", "subject", "preheader", "body", "source_code", "segment", "variants"):
        if key in data:
            setattr(campaign, key, data[key])
    if "kind" in data:
        campaign.kind = CampaignKind(data["kind"])
    if "format" in data:
        campaign.format = ContentFormat(data["format"])
    if "lists" in data:
        campaign.lists = _lists(data["lists"])


@blp.route("/campaigns", methods=["POST"])
@require_role(Role.editor)
@blp.arguments(CampaignIn)
def create_campaign(data: dict[str, Any]) -> Any:
    session = db.session()
    campaign = Campaign(name=data["name"], kind=CampaignKind(data["kind"]), subject="", body="",
                        created_by=g.actor)
    _apply(campaign, data)
    session.add(campaign)
    session.flush()
    audit(session, g.actor, "create", campaign.id)
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
    if campaign.status.value != "draft":
        abort(409, message=f"Only drafts can be edited; this campaign is {campaign.status}.")
    _apply(campaign, data)
    audit(session, g.actor, "edit", campaign.id, fields=sorted(data))
    session.commit()
    return campaign_out(campaign)


@blp.route("/campaigns/<int:campaign_id>/audience", methods=["GET"])
@require_role(Role.viewer)
def get_audience(campaign_id: int) -> Any:
    return {"count": audience_count(db.session(), _get(campaign_id))}


def _act(campaign_id: int, action: str, **kwargs: Any) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    try:
        if action == "send":
            request_send(session, campaign, g.actor, kwargs.get("send_at"))
        elif action == "resume":
            resume(session, campaign, g.actor)
        else:
            require_transition(session, campaign, action, g.actor)
    except IllegalTransition as exc:
        session.rollback()
        abort(409, message=str(exc))
    session.commit()
    return campaign_out(campaign), 202


@blp.route("/campaigns/<int:campaign_id>/send", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(SendIn)
def send_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    campaign = _get(campaign_id)
    if not campaign.lists:
        abort(422, errors={"lists": ["Choose at least one list before sending."]})
    return _act(campaign_id, "send", send_at=data.get("send_at"))


@blp.route("/campaigns/<int:campaign_id>/pause", methods=["POST"])
@require_role(Role.campaigner)
def pause_campaign(campaign_id: int) -> Any:
    return _act(campaign_id, "pause")


@blp.route("/campaigns/<int:campaign_id>/resume", methods=["POST"])
@require_role(Role.campaigner)
def resume_campaign(campaign_id: int) -> Any:
    return _act(campaign_id, "resume")


@blp.route("/campaigns/<int:campaign_id>/cancel", methods=["POST"])
@require_role(Role.campaigner)
def cancel_campaign(campaign_id: int) -> Any:
    return _act(campaign_id, "cancel")


@blp.route("/campaigns/<int:campaign_id>/test", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(TestIn)
def test_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    enqueue_after_commit(session, send_test, campaign.id, list(data["emails"]), g.actor,
                         queue="transactional")
    session.commit()
    return {"status": "queued", "emails": data["emails"]}, 202


def register(app: Flask) -> None:
    """Register the blueprint; in embedded mode run the recovery pass once at first request."""
    from ..extensions import api, csrf

    csrf.exempt(blp)  # bearer tokens, no cookies: CSRF does not apply
    api.register_blueprint(blp)

    @app.before_request
    def _embedded_recovery() -> None:
        if app.extensions.get("campaign_recovery_done"):
            return
        app.extensions["campaign_recovery_done"] = True
        if task_queue().local is not None:
            from .recovery import recover

            enqueue_after_commit(db.session(), recover, queue="default")
            db.session().commit()
