"""GET /api/v1/subscribers and /api/v1/subscribers/<id>."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import db
from ..auth import require_role
from ..extensions import ApiBlueprint
from ..models import MailingList, Role, Subscriber, Subscription, SubscriptionStatus
from ..subscribers import consent_record_data, email_key
from .paging import offset_page
from .refusals import found
from .schemas import SubscriberDetailOut, SubscriberPageOut

blp = ApiBlueprint("subscribers_api", __name__, url_prefix="/api/v1", description="Subscribers")


# A filter never holds a control character (PostgreSQL cannot compare a NUL byte).
NO_CONTROL = validate.Regexp(r"^[^\x00-\x1f\x7f]*$",
                             error="Must not contain control characters.")


class SubscriberQuery(Schema):
    email = fields.String(validate=[validate.Length(max=254), NO_CONTROL])
    list = fields.String(validate=[validate.Length(max=64), NO_CONTROL])
    status = fields.String(validate=validate.OneOf([s.value for s in SubscriptionStatus]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


def subscriber_dict(s: Subscriber, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": s.id,
        "email": s.email,
        "first_name": s.first_name,
        "last_name": s.last_name,
        "postal_code": s.postal_code,
        "state": s.state,
        "locale": s.locale,
        "status": s.status.value,
        "created_at": s.created_at,
        "subscriptions": [
            {
                "list": sub.mailing_list.slug,
                "status": sub.status.value,
                "confirmed_at": sub.confirmed_at,
                "unsubscribed_at": sub.unsubscribed_at,
            }
            for sub in s.subscriptions
        ],
    }
    if detail:
        data["attributes"] = s.attributes
        data["consent_records"] = [
            {"id": c.id, **consent_record_data(c)} for c in s.consent_records
        ]
    return data


@blp.route("/subscribers", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.arguments(SubscriberQuery, location="query")
@blp.response(200, SubscriberPageOut)
def list_subscribers(args: dict[str, Any]) -> Any:
    """Subscribers, newest first, filtered by address, list and subscription status."""
    query = select(Subscriber).options(
        selectinload(Subscriber.subscriptions).joinedload(Subscription.mailing_list)
    )
    if args.get("email"):
        query = query.where(Subscriber.email_key == email_key(args["email"].strip()))
    if args.get("list") or args.get("status"):
        sub_filter = select(Subscription.subscriber_id)
        if args.get("list"):
            sub_filter = sub_filter.join(MailingList).where(MailingList.slug == args["list"])
        if args.get("status"):
            sub_filter = sub_filter.where(Subscription.status == args["status"])
        query = query.where(Subscriber.id.in_(sub_filter))
    return offset_page(query, Subscriber.id, args, subscriber_dict)


@blp.route("/subscribers/<int:subscriber_id>", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.response(200, SubscriberDetailOut)
def get_subscriber(subscriber_id: int) -> Any:
    """One subscriber with subscriptions and the consent ledger."""
    subscriber = found(db.session().get(Subscriber, subscriber_id), "No such subscriber.")
    return subscriber_dict(subscriber, detail=True)
