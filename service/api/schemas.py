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
    state = fields.String(metadata={"description": "Two-letter state of the postal code"})
    county = fields.String(metadata={"example": "Kings County"})
    timezone = fields.String(metadata={"description": "IANA time zone of the postal code",
                                       "example": "America/New_York"})
    locale = fields.String()
    status = fields.String()
    created_at = fields.DateTime()
    attributes = fields.Dict(keys=fields.String(), values=fields.String(),
                             metadata={"example": {"cd": "NY-10"}})
    tags = fields.List(fields.String(), metadata={"description": "Sorted"})
    subscriptions = fields.List(fields.Nested(SubscriptionOut))


class SubscriberDetailOut(SubscriberOut):
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


class SubscriberAddedOut(SubscriberDetailOut):
    confirmation_mail = fields.String(metadata={
        "description": '"queued", "throttled" (the per-address throttle said no) or "" '
                       "(none needed)"})


# Staff input. Texts, attributes and tags are checked by the domain's field rules (the
# same as signup, the preference centre and imports), which name the exact field of a
# refusal ("attributes.cd", "tags.2"); the schema only says their shapes.
ATTRIBUTES_DOC = ("Text values by key (key 1-100 characters, value at most 1,000, at most "
                  "50 keys; no control or direction characters)")
TAGS_DOC = ("Tags, 1-64 characters each after trimming, stored lower-case; no comma, "
            "semicolon, control or direction characters; at most 50 per person")


class SubscriberIn(Schema):
    email = fields.String(required=True)
    first_name = fields.String(load_default="")
    last_name = fields.String(load_default="")
    postal_code = fields.String(load_default="")
    locale = fields.String(load_default=None, metadata={"enum": ["en", "es"]})
    attributes = fields.Dict(load_default=dict, metadata={"description": ATTRIBUTES_DOC})
    tags = fields.List(fields.Raw(), load_default=list, metadata={"description": TAGS_DOC})
    lists = fields.List(fields.String(), required=True,
                        metadata={"description": "List slugs (1-20)"})
    confirmed = fields.Boolean(load_default=False, metadata={
        "description": "Staff vouch for consent (campaigner role and consent_note needed); "
                       "otherwise the subscriptions are pending and a confirmation mail "
                       "goes out"})
    consent_note = fields.String(load_default="")


class SubscriberPatch(Schema):
    first_name = fields.String()
    last_name = fields.String()
    postal_code = fields.String()
    locale = fields.String(metadata={"enum": ["en", "es"]})
    attributes = fields.Dict(metadata={
        "description": ATTRIBUTES_DOC + "; merged into the stored ones, a null value "
                                        "removes that key"})
    tags = fields.List(fields.Raw(), metadata={"description": TAGS_DOC + "; replaces them"})
