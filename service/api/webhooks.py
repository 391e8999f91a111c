"""Staff API: the suppression list (admin) and campaign statistics (viewer)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request
from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import select

from .. import db
from ..auth import require_role
from ..extensions import ApiBlueprint
from ..models import Campaign, Role, Suppression, SuppressionReason
from ..subscribers import InvalidEmail
from ..suppressions import AlreadySuppressed, ErasureIsFinal, lift, suppress_by_hand
from ..webhooks.stats import campaign_stats
from .paging import offset_page
from .refusals import found

suppressions_blp = ApiBlueprint(
    "suppressions_api", __name__, url_prefix="/api/v1", description="Suppression list (admin)"
)
stats_blp = ApiBlueprint(
    "campaign_stats_api", __name__, url_prefix="/api/v1", description="Campaign statistics"
)


class SuppressionOut(Schema):
    id = fields.Integer()
    email = fields.String(metadata={"description": "Empty for erased addresses."})
    email_hash = fields.String()
    reason = fields.String()
    source = fields.String()
    note = fields.String()
    created_at = fields.DateTime()


class SuppressionPageOut(Schema):
    items = fields.List(fields.Nested(SuppressionOut))
    page = fields.Integer()
    per_page = fields.Integer()
    has_more = fields.Boolean()


class SuppressionQuery(Schema):
    reason = fields.String(validate=validate.OneOf([r.value for r in SuppressionReason]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class SuppressionIn(Schema):
    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class RemovalIn(Schema):
    class Meta:
        unknown = EXCLUDE

    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


def _suppression_dict(s: Suppression) -> dict[str, Any]:
    return {"id": s.id, "email": s.email, "email_hash": s.email_hash, "reason": s.reason.value,
            "source": s.source, "note": s.note, "created_at": s.created_at}


def _actor() -> str:
    return str(g.get("actor", "staff"))


def _errors(status: int, field: str, message: str) -> Any:
    response = jsonify({"errors": {field: [message]}})
    response.status_code = status
    return response


@suppressions_blp.route("/suppressions", methods=["GET"])
@suppressions_blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@suppressions_blp.arguments(SuppressionQuery, location="query")
@suppressions_blp.response(200, SuppressionPageOut)
def list_suppressions(args: dict[str, Any]) -> Any:
    """Suppressed addresses, newest first."""
    query = select(Suppression)
    if args.get("reason"):
        query = query.where(Suppression.reason == args["reason"])
    return offset_page(query, Suppression.id, args, _suppression_dict)


@suppressions_blp.route("/suppressions", methods=["POST"])
@suppressions_blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@suppressions_blp.arguments(SuppressionIn, location="json")
@suppressions_blp.response(201, SuppressionOut)
def add_suppression(data: dict[str, Any]) -> Any:
    """Suppress an address by hand (reason `manual`); 409 if it is already suppressed."""
    session = db.session()
    try:
        suppression = suppress_by_hand(session, data["email"], data["note"], _actor())
    except InvalidEmail as exc:
        return _errors(422, "email", str(exc))
    except AlreadySuppressed as exc:
        return _errors(409, "email", str(exc))
    session.commit()
    return _suppression_dict(suppression)


@suppressions_blp.route("/suppressions/<int:suppression_id>", methods=["DELETE"])
@suppressions_blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@suppressions_blp.response(204)
def remove_suppression(suppression_id: int) -> Any:
    """Remove a suppression; needs `reason` (JSON body or query string), kept in the audit.

    A bounced or complained subscriber becomes active again (mail may be sent to them);
    their subscriptions stay as they are.
    """
    body = request.get_json(silent=True) if request.is_json else None
    given = body.get("reason") if isinstance(body, dict) else None
    raw = {"reason": given or request.args.get("reason", "")}
    errors = RemovalIn().validate(raw)
    if errors:
        return _errors(422, "reason", "Give a reason (at least 3 characters) for removing it.")
    session = db.session()
    suppression = found(session.get(Suppression, suppression_id), "No such suppression.")
    try:
        lift(session, suppression, raw["reason"], _actor())
    except ErasureIsFinal as exc:
        return _errors(409, "reason", str(exc))
    session.commit()
    return ""


@stats_blp.route("/campaigns/<int:campaign_id>/stats", methods=["GET"])
@stats_blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
def get_campaign_stats(campaign_id: int) -> Any:
    """Delivered, opens (total/unique), clicks (total/unique), bounces, spam reports,
    unsubscribes: totals, hourly buckets (UTC) and the most-clicked links."""
    session = db.session()
    found(session.get(Campaign, campaign_id), "No such campaign.")
    return jsonify(campaign_stats(session, campaign_id))
