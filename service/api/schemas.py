"""Shared API schemas."""

from __future__ import annotations

from marshmallow import Schema, fields


class CountsOut(Schema):
    pending = fields.Integer()
    confirmed = fields.Integer()
    unsubscribed = fields.Integer()


class ListOut(Schema):
    id = fields.Integer()
    slug = fields.String()
    name = fields.String()
    name_es = fields.String()
    description = fields.String()
    description_es = fields.String()
    public = fields.Boolean()
    # {"en": {"subject", "body"}, "es": {...}}
    welcome = fields.Dict(keys=fields.String(), values=fields.Dict())
    subscriber_counts = fields.Nested(CountsOut)


class SubscriptionOut(Schema):
    list = fields.String()
    status = fields.String()
    confirmed_at = fields.DateTime(allow_none=True)
    unsubscribed_at = fields.DateTime(allow_none=True)


class ConsentOut(Schema):
    id = fields.Integer()
    action = fields.String()
    list = fields.String(allow_none=True)
    at = fields.DateTime()
    ip = fields.String()
    user_agent = fields.String()
    source = fields.String()
    endpoint = fields.String()
    consent_text_version = fields.String()
    actor = fields.String()
    note = fields.String()


class SubscriberOut(Schema):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    postal_code = fields.String()
    state = fields.String()
    locale = fields.String()
    status = fields.String()
    created_at = fields.DateTime()
    subscriptions = fields.List(fields.Nested(SubscriptionOut))


class SubscriberDetailOut(SubscriberOut):
    attributes = fields.Dict()
    consent_records = fields.List(fields.Nested(ConsentOut))


class SubscriberPageOut(Schema):
    items = fields.List(fields.Nested(SubscriberOut))
    page = fields.Integer()
    per_page = fields.Integer()
    has_more = fields.Boolean()


class WelcomeIn(Schema):
    subject = fields.String(metadata={"description": "a template, one line, at most 300"})
    body = fields.String(metadata={"description": "a Markdown template"})


class WelcomesIn(Schema):
    en = fields.Nested(WelcomeIn, allow_none=True)
    es = fields.Nested(WelcomeIn, allow_none=True)


class ListIn(Schema):
    """The body of POST / PATCH /api/v1/lists (documentation: `campaigns.list_settings`
    checks it, so a string or an object is accepted where the shapes allow both)."""

    slug = fields.String(metadata={
        "description": "lower-case letters, digits and dashes, at most 64; fixed once created"})
    name = fields.Raw(metadata={"description": 'text (English) or {"en": text, "es": text}'})
    description = fields.Raw(metadata={
        "description": 'text (English) or {"en": text, "es": text}'})
    public = fields.Boolean()
    welcome = fields.Nested(WelcomesIn, metadata={
        "description": 'per language {"subject", "body"}, or null to remove it'})
