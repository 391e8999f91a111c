"""Subscribers in the staff API: list and read (viewer), add (editor; `confirmed` needs
campaigner), edit (campaigner), erase (admin)."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import db
from ..auth import require_role
from ..extensions import ApiBlueprint, evidence
from ..models import MailingList, Role, Subscriber, Subscription, SubscriptionStatus
from ..subscribers import Evidence, consent_record_data, email_key
from ..subscriptions.staff_changes import (
    Addition,
    FormErrors,
    Unwelcome,
    add_subscriber,
    edit_subscriber,
    erase_subscriber,
)
from .paging import offset_page
from .refusals import found
from .schemas import (
    SubscriberAddedOut,
    SubscriberDetailOut,
    SubscriberIn,
    SubscriberPageOut,
    SubscriberPatch,
)

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
        "county": s.county,
        "timezone": s.timezone,
        "locale": s.locale,
        "status": s.status.value,
        "created_at": s.created_at,
        "attributes": s.attributes or {},
        "tags": sorted(row.tag for row in s.tag_rows),
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
        selectinload(Subscriber.subscriptions).joinedload(Subscription.mailing_list),
        selectinload(Subscriber.tag_rows),
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


def _staff_evidence(endpoint: str) -> Evidence:
    base = evidence(endpoint, "api")
    return Evidence(ip=base.ip, user_agent=base.user_agent, source=base.source,
                    endpoint=endpoint, actor=g.actor,
                    consent_text_version=base.consent_text_version)


def _refuse(exc: FormErrors) -> Any:
    db.session().rollback()
    abort(422, errors={name: [message] for name, message in exc.errors.items()})


@blp.route("/subscribers", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.editor)
@blp.arguments(SubscriberIn)
@blp.response(201, SubscriberAddedOut)
@blp.alt_response(200, schema=SubscriberAddedOut, description="Merged into a known address")
@blp.alt_response(409, description="The address is suppressed or was erased")
def create_subscriber(data: dict[str, Any]) -> Any:
    """Add a person: pending with a confirmation mail (the signup's throttle), or confirmed
    on staff's word (`confirmed`, campaigner role, with a `consent_note`). A known address
    is merged like an import row (blanks filled, attributes and tags added): 200."""
    if data["confirmed"] and not g.actor_role.allows(Role.campaigner):
        abort(403, message="Adding confirmed subscribers needs the campaigner role.")
    session = db.session()
    try:
        added = add_subscriber(session, Addition(**data), _staff_evidence("api.subscribers.add"))
    except FormErrors as exc:
        return _refuse(exc)
    except Unwelcome as exc:
        session.rollback()
        abort(409, message=str(exc))
    session.commit()
    out = {**subscriber_dict(added.subscriber, detail=True),
           "confirmation_mail": added.confirmation_mail}
    return out, 201 if added.created else 200


@blp.route("/subscribers/<int:subscriber_id>", methods=["PATCH"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.campaigner)
@blp.arguments(SubscriberPatch)
@blp.response(200, SubscriberDetailOut)
def patch_subscriber(data: dict[str, Any], subscriber_id: int) -> Any:
    """Edit names, postal code (state, county and time zone follow), language, attributes
    (merged; null removes a key) and tags (replaced)."""
    session = db.session()
    subscriber = found(session.get(Subscriber, subscriber_id), "No such subscriber.")
    try:
        edit_subscriber(session, subscriber, data, g.actor)
    except FormErrors as exc:
        return _refuse(exc)
    session.commit()
    return subscriber_dict(subscriber, detail=True)


@blp.route("/subscribers/<int:subscriber_id>", methods=["DELETE"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.admin)
@blp.response(204)
def delete_subscriber(subscriber_id: int) -> Any:
    """Erase a person (GDPR): profile, subscriptions and consent ledger go; only the keyed
    hash of the address stays, on the suppression list."""
    session = db.session()
    subscriber = found(session.get(Subscriber, subscriber_id), "No such subscriber.")
    erase_subscriber(session, subscriber, _staff_evidence("api.subscribers.erase"))
    session.commit()
    return None
