"""Staff REST API for outgoing webhooks (/api/v1/webhooks…), admin only.

`POST` answers the endpoint with its `secret` once; no other answer ever carries it.
Bad input answers 422 naming the field (`{"errors": {field: [message]}}`), nothing stored.
"""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask_smorest import abort
from marshmallow import EXCLUDE, Schema, fields, validate

from .. import db
from ..auth import require_role
from ..extensions import ApiBlueprint
from ..fields import StrictBoolean
from ..models import OutgoingEndpoint, Role
from ..outbound import EVENT_TYPES
from ..outgoing.addresses import URL_MAX
from ..outgoing.endpoints import (
    EndpointError,
    all_endpoints,
    attempts,
    change,
    create,
    delete,
    describe,
    send_test,
    waiting,
)
from .refusals import found

blp = ApiBlueprint("outgoing_webhooks_api", __name__, url_prefix="/api/v1",
                   description="Outgoing webhooks (admin)")


class WebhookIn(Schema):
    class Meta:
        unknown = EXCLUDE

    url = fields.String(required=True, validate=validate.Length(min=1, max=URL_MAX))
    events = fields.List(fields.String(validate=validate.Length(max=60)), required=True,
                         validate=validate.Length(min=1, max=2 * len(EVENT_TYPES)),
                         metadata={"description": f"Any of: {', '.join(EVENT_TYPES)}"})


class WebhookPatch(Schema):
    class Meta:
        unknown = EXCLUDE

    url = fields.String(validate=validate.Length(min=1, max=URL_MAX))
    events = fields.List(fields.String(validate=validate.Length(max=60)),
                         validate=validate.Length(min=1, max=2 * len(EVENT_TYPES)))
    enabled = StrictBoolean()


class DeliveriesQuery(Schema):
    before = fields.Integer(validate=validate.Range(min=1, max=2**62))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


def _actor() -> str:
    return str(g.get("actor", "staff"))


def _get(endpoint_id: int) -> OutgoingEndpoint:
    return found(db.session().get(OutgoingEndpoint, endpoint_id), "No such webhook.")


def _refuse(exc: EndpointError) -> Any:
    db.session().rollback()
    abort(422, errors={exc.field: [exc.message]})


def _out(endpoint: OutgoingEndpoint) -> dict[str, Any]:
    return {**describe(endpoint), "waiting": waiting(db.session(), endpoint.id)}


@blp.route("/webhooks", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@blp.arguments(WebhookIn)
def create_webhook(data: dict[str, Any]) -> Any:
    """Register a receiver; the answer shows its signing `secret`, this once only."""
    session = db.session()
    try:
        made = create(session, data["url"], data["events"], _actor())
    except EndpointError as exc:
        return _refuse(exc)
    session.commit()
    response = jsonify({**_out(made.endpoint), "secret": made.secret})
    response.status_code = 201
    return response


@blp.route("/webhooks", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
def list_webhooks() -> Any:
    """Every endpoint (never its secret)."""
    return jsonify({"items": [_out(e) for e in all_endpoints(db.session())]})


@blp.route("/webhooks/<int:endpoint_id>", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
def get_webhook(endpoint_id: int) -> Any:
    return jsonify(_out(_get(endpoint_id)))


@blp.route("/webhooks/<int:endpoint_id>", methods=["PATCH"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@blp.arguments(WebhookPatch)
def edit_webhook(data: dict[str, Any], endpoint_id: int) -> Any:
    """Change `url`, `events`, `enabled` (enabling again sends what waited)."""
    session = db.session()
    endpoint = _get(endpoint_id)
    try:
        change(session, endpoint, data, _actor())
    except EndpointError as exc:
        return _refuse(exc)
    session.commit()
    return jsonify(_out(endpoint))


@blp.route("/webhooks/<int:endpoint_id>", methods=["DELETE"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@blp.response(204)
def delete_webhook(endpoint_id: int) -> Any:
    """Delete the endpoint, with its outbox rows and delivery log."""
    session = db.session()
    delete(session, _get(endpoint_id), _actor())
    session.commit()
    return ""


@blp.route("/webhooks/<int:endpoint_id>/deliveries", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@blp.arguments(DeliveriesQuery, location="query")
def list_deliveries(args: dict[str, Any], endpoint_id: int) -> Any:
    """Attempts, newest first: event id and type, attempt number, time, status code or
    error, duration. `?before=<attempt id>` pages back."""
    endpoint = _get(endpoint_id)
    items = attempts(db.session(), endpoint.id, before=args.get("before"),
                     limit=args["limit"])
    return jsonify({"items": items})


@blp.route("/webhooks/<int:endpoint_id>/test", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
def test_webhook(endpoint_id: int) -> Any:
    """Send a signed `test` event to this endpoint (202; see its deliveries)."""
    session = db.session()
    endpoint = _get(endpoint_id)
    try:
        event = send_test(session, endpoint, _actor())
    except EndpointError as exc:
        db.session().rollback()
        abort(409, errors={exc.field: [exc.message]})
    session.commit()
    response = jsonify({"event_id": event.public_id, "type": event.type})
    response.status_code = 202
    return response
