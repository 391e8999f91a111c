"""The public JSON signup endpoint (CORS for FORM_ALLOWED_ORIGINS)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import EXCLUDE, Schema, fields, validate

from .. import db
from ..extensions import SIGNUP_BODY_LIMIT, ApiBlueprint, csrf, evidence, limiter, signup_limit
from ..fields import NAME_MAX, POSTAL_MAX
from ..i18n import LOCALES
from ..subscriptions import signup as logic

blp = ApiBlueprint(
    "public_api", __name__, url_prefix="/api/v1", description="Public signup (no token needed)"
)


class SubscriptionIn(Schema):
    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    lists = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        required=True,
        validate=validate.Length(min=1, max=20),
    )
    first_name = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    last_name = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    postal_code = fields.String(load_default="", validate=validate.Length(max=POSTAL_MAX))
    lang = fields.String(load_default="en", validate=validate.OneOf(LOCALES))
    source = fields.String(load_default="", validate=validate.Length(max=logic.SOURCE_MAX))
    website = fields.String(
        load_default="", metadata={"description": "Honeypot: leave empty."}
    )


class PendingOut(Schema):
    status = fields.String(metadata={"example": "pending"})


class ErrorsOut(Schema):
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


@blp.before_request
def _small_bodies() -> None:
    request.max_content_length = SIGNUP_BODY_LIMIT


@blp.route("/subscriptions", methods=["POST"])
@limiter.limit(signup_limit)
@csrf.exempt
# An instance, not the class: webargs builds a schema from a class on every request (a
# deep copy of its fields, 3 % of a signup's CPU); a marshmallow schema can be reused.
@blp.arguments(SubscriptionIn(), location="json")
@blp.response(202, PendingOut)
@blp.alt_response(422, schema=ErrorsOut, description="Invalid input")
@blp.alt_response(429, schema=ErrorsOut, description="Rate limited")
def create_subscription(data: dict[str, Any]) -> Any:
    """Sign up for one or more lists.

    The answer is the same for new, pending, confirmed, unsubscribed and suppressed
    addresses: a confirmation mail goes out only where one is needed.
    """
    form = logic.SignupForm(
        email=data["email"],
        lists=data["lists"],
        first_name=data["first_name"],
        last_name=data["last_name"],
        postal_code=data["postal_code"],
        lang=data["lang"],
        source=data["source"] or request.headers.get("Origin", ""),
    )
    try:
        logic.submit(db.session(), form, honeypot=data["website"],
                     evidence=lambda source: evidence("api", source))
    except logic.ValidationErrors as exc:
        response = jsonify({"errors": exc.errors})
        response.status_code = 422
        return response
    return {"status": "pending"}
