"""Writing and acting on campaigns: the one implementation behind the REST API, the CLI
and the staff admin.

- `CampaignIn` / `CampaignPatch` validate a draft (the admin feeds its form through the
  same schema the API uses, so both refuse the same input with the same messages);
- `create_draft`, `edit_draft` write it, with an audit record;
- `act` runs send / pause / resume / cancel through the state machine;
- `queue_test` queues a test send;
- `preview` renders a (possibly unsaved) campaign with the real renderer, for staff eyes.

Nothing here commits: the caller commits (jobs queued with `enqueue_after_commit` go out
with that commit).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema
from sqlalchemy.orm import Session

from ..db import MAX_ID
from ..fields import CONTROL, StrictBoolean
from ..lists import lists_by_slugs
from ..models import Campaign, CampaignKind, CampaignStatus, ContentFormat, MailingList
from ..queue import enqueue_after_commit
from . import saved, segments
from .abtest import AbTestIn, subject_sources
from .lifecycle import IllegalTransition, audit, require_transition
from .localtime import BadLocalTime, check_window, parse_local
from .render import SAMPLE_PERSON, render_variant, template_errors
from .sending import SEND_TEST_JOB, request_send, resume

US_STATE_LENGTH = 2
# The highest `max_per_minute` taken: above it a cap caps nothing (a worker sends far
# fewer per minute), so a larger number is a typo.
MAX_PER_MINUTE_CAP = 100_000
ACTIONS = ("send", "pause", "resume", "cancel")


# Control characters are refused, never dropped (a NUL byte cannot even be stored on
# PostgreSQL); text with lines keeps its tabs and line breaks.
LINE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _one_line(value: str) -> None:
    if CONTROL.search(value):
        raise ValidationError("Must not contain line breaks or control characters.")


def _lines(value: str) -> None:
    if LINE_CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")


def _text(*rules: Any, lines: bool = False, **options: Any) -> fields.String:
    return fields.String(validate=[*rules, _lines if lines else _one_line], **options)


ACTION_URL_MAX = 2000


def _action_url(value: str) -> None:
    """An absolute http(s) URL with a host (or "" for none)."""
    if not value:
        return
    _one_line(value)
    if any(ch.isspace() for ch in value) or BIDI.search(value):
        raise ValidationError("Must not contain spaces or direction marks.")
    try:
        value.encode("utf-8")  # a lone surrogate cannot be stored
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:  # UnicodeEncodeError is one
        raise ValidationError("Not a valid URL.") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError("Must be an http:// or https:// address with a host.")


# Direction overrides and isolates: a link that reads differently than it goes.
BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class VariantIn(Schema):
    subject = _text(validate.Length(min=1, max=300), lines=True, required=True)
    body = _text(validate.Length(min=1), lines=True, required=True)


class VariantsIn(Schema):
    es = fields.Nested(VariantIn)


class CampaignIn(segments.SegmentErrorsFlat):
    name = _text(validate.Length(min=1, max=200), required=True)
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in CampaignKind]))
    # The subject is a template: it may span lines (the rendered subject is one line).
    subject = _text(validate.Length(min=1, max=300), lines=True, required=True)
    preheader = _text(validate.Length(max=300), lines=True, load_default="")
    body = _text(validate.Length(min=1), lines=True, required=True)
    format = fields.String(load_default="markdown",
                           validate=validate.OneOf([f.value for f in ContentFormat]))
    lists = fields.List(_text(validate.Length(min=1, max=100)), required=True,
                        validate=validate.Length(min=1))
    segment = segments.SegmentField(load_default=dict)
    # A saved segment to follow instead of `segment` (see `saved`); null: none.
    segment_id = fields.Integer(strict=True, allow_none=True,
                                validate=validate.Range(min=1, max=MAX_ID))
    variants = fields.Nested(VariantsIn, load_default=dict)
    source_code = _text(validate.Length(max=100), load_default="")
    # Shown in the public archive (/archive, /archive.atom) once sent.
    archive = StrictBoolean(load_default=False)

    @validates_schema
    def _one_segment(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("segment_id") is not None and data.get("segment"):
            raise ValidationError("Give either a segment or a segment_id, not both.",
                                  "segment_id")

    # A/B subject test (abtest): null or left out for none.
    ab_test = fields.Nested(AbTestIn, allow_none=True, load_default=None)

    # The call to action: clicks on it count as actions in the statistics.
    action_url = fields.String(validate=[validate.Length(max=ACTION_URL_MAX), _action_url],
                               load_default="")

    # Send-rate cap (`ratecap`): mails of this campaign per minute; null: none.
    max_per_minute = fields.Integer(strict=True, allow_none=True, load_default=None,
                                    validate=validate.Range(min=1, max=MAX_PER_MINUTE_CAP))

    @validates_schema
    def _templates(self, data: dict[str, Any], **_: Any) -> None:
        sources = {"subject": data.get("subject"), "body": data.get("body")}
        for key, value in (data.get("variants") or {}).get("es", {}).items():
            sources[f"variants.es.{key}"] = value
        sources.update(subject_sources(data.get("ab_test")))
        errors = template_errors({name: source for name, source in sources.items()
                                  if isinstance(source, str)})
        if errors:
            raise ValidationError({name: [message] for name, message in errors.items()})


class CampaignPatch(CampaignIn):
    """Any subset of `CampaignIn`: a field left out keeps its value (and gets no default)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(**kwargs)


# How far ahead a send may be scheduled: beyond it a date is a typo (or an attack on the
# scheduler), not a plan.
SCHEDULE_HORIZON = timedelta(days=365)


class SendIn(Schema):
    send_at = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    # Local-hour delivery (`localtime`): "YYYY-MM-DDTHH:MM" in each recipient's zone.
    send_at_local = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "Local-hour delivery: this wall-clock time (YYYY-MM-DDTHH:MM) "
                                 "in each recipient's own time zone; at most 14 days ahead; "
                                 "not together with send_at.",
                  "example": "2027-06-01T09:00"})

    @validates("send_at")
    def _within_horizon(self, value: datetime | None, **_: Any) -> None:
        if value is not None and value - datetime.now(UTC) > SCHEDULE_HORIZON:
            raise ValidationError(
                f"Schedule at most {SCHEDULE_HORIZON.days} days ahead.")

    @validates("send_at_local")
    def _local_hour(self, value: object, **_: Any) -> None:
        if value is None:
            return
        try:
            check_window(parse_local(value), datetime.now(UTC))
        except BadLocalTime as exc:
            raise ValidationError(str(exc)) from None

    @validates_schema
    def _one_time(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("send_at") is not None and data.get("send_at_local") is not None:
            raise ValidationError({"send_at_local": [
                "Give either send_at (one moment for everyone) or send_at_local, not both."]})


class DecideIn(Schema):
    """Deciding an A/B test early: the index of the winning subject."""

    winner = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class TestIn(Schema):
    emails = fields.List(fields.Email(), required=True, validate=validate.Length(min=1, max=20))


class UnknownLists(ValueError):
    """Some list slugs name no list (HTTP 422 on `lists`)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"Unknown list: {', '.join(missing)}")
        self.missing = missing


class NotADraft(ValueError):
    """Only drafts can be edited (HTTP 409)."""

    def __init__(self, status: CampaignStatus) -> None:
        super().__init__(f"Only drafts can be edited; this campaign is {status}.")


class Unrenderable(ValueError):
    """The campaign's stored templates cannot render (HTTP 422, `{field: message}`)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class NoLists(ValueError):
    """A campaign without lists cannot be sent (HTTP 422 on `lists`)."""

    def __init__(self) -> None:
        super().__init__("Choose at least one list before sending.")


class LocalHourWithTest(ValueError):
    """A subject test decides on one sample sent at once; recipients spread over their
    time zones would make its figures compare different hours (HTTP 422 on
    `send_at_local`)."""

    def __init__(self) -> None:
        super().__init__("A campaign with a subject test cannot be sent at a local hour.")


def resolve_lists(session: Session, slugs: list[str]) -> list[MailingList]:
    found = lists_by_slugs(session, slugs)
    missing = sorted(set(slugs) - {ml.slug for ml in found})
    if missing:
        raise UnknownLists(missing)
    return found


def apply_fields(session: Session, campaign: Campaign, data: dict[str, Any]) -> None:
    """Copy validated `CampaignIn` data onto the campaign (only the keys present).

    SegmentError for engagement filters naming no campaign, UnknownSegment for a
    `segment_id` naming no saved segment. A saved segment replaces the campaign's own
    segment and the other way round.
    """
    for key in ("name", "subject", "preheader", "body", "source_code", "variants",
                "archive", "ab_test", "action_url",
                "max_per_minute"):
        if key in data:
            setattr(campaign, key, data[key])
    if data.get("segment_id") is not None:
        saved.get_segment(session, data["segment_id"])
        campaign.segment_id = data["segment_id"]
        campaign.segment = {}
    elif "segment" in data:
        segments.check_campaigns(session, segments.parse(data["segment"]))
        campaign.segment = data["segment"]
        campaign.segment_id = None
    elif "segment_id" in data:
        campaign.segment_id = None
    if "kind" in data:
        campaign.kind = CampaignKind(data["kind"])
    if "format" in data:
        campaign.format = ContentFormat(data["format"])
    if "lists" in data:
        campaign.lists = resolve_lists(session, data["lists"])


def create_draft(session: Session, data: dict[str, Any], actor: str) -> Campaign:
    campaign = Campaign(name=data["name"], kind=CampaignKind(data["kind"]), subject="", body="",
                        created_by=actor)
    apply_fields(session, campaign, data)
    session.add(campaign)
    session.flush()
    audit(session, actor, "create", campaign.id)
    return campaign


def edit_draft(session: Session, campaign: Campaign, data: dict[str, Any], actor: str) -> None:
    """Edit a draft; `archive` alone may change at any time (publish a sent campaign in
    the public archive, or take it out)."""
    if campaign.status != CampaignStatus.draft and set(data) != {"archive"}:
        raise NotADraft(campaign.status)
    apply_fields(session, campaign, data)
    audit(session, actor, "edit", campaign.id, fields=sorted(data))


def act(session: Session, campaign: Campaign, action: str, actor: str,
        send_at: datetime | None = None, send_at_local: str | None = None) -> None:
    """send (now, at `send_at`, or at the local hour `send_at_local`: validated by
    `SendIn`), pause, resume or cancel; IllegalTransition if not allowed.

    On IllegalTransition the caller rolls back.
    """
    if action == "send":
        if not campaign.lists:
            raise NoLists()
        if send_at_local and campaign.ab_test:
            raise LocalHourWithTest()
        request_send(session, campaign, actor, send_at, send_at_local or "")
    elif action == "resume":
        resume(session, campaign, actor)
    elif action in ACTIONS:
        require_transition(session, campaign, action, actor)
    else:
        raise ValueError(f"unknown campaign action {action!r}")


def stored_template_errors(campaign: Campaign) -> dict[str, str]:
    """{field: message} for the campaign's templates that cannot render (a campaign saved
    before a limit existed, or written around the API)."""
    sources = {"subject": campaign.subject, "body": campaign.body}
    for key, value in ((campaign.variants or {}).get("es") or {}).items():
        sources[f"variants.es.{key}"] = value
    sources.update(subject_sources(campaign.ab_test))
    return template_errors({k: v for k, v in sources.items() if isinstance(v, str)})


def queue_test(session: Session, campaign: Campaign, emails: list[str], actor: str) -> None:
    """Queue the test send (the job renders and sends; it writes the audit record).

    Unrenderable if the templates cannot render: refused now rather than failing in a job.
    """
    errors = stored_template_errors(campaign)
    if errors:
        raise Unrenderable(errors)
    enqueue_after_commit(session, SEND_TEST_JOB, campaign.id, list(emails), actor,
                         queue="transactional")


def unsaved(data: dict[str, Any]) -> Campaign:
    """A transient campaign from validated data (never added to a session): for previews."""
    campaign = Campaign(
        id=0, name=data.get("name") or "", kind=CampaignKind(data.get("kind") or "newsletter"),
        subject=data.get("subject") or "", preheader=data.get("preheader") or "",
        body=data.get("body") or "", format=ContentFormat(data.get("format") or "markdown"),
        variants=data.get("variants") or {}, source_code=data.get("source_code") or "",
        ab_test=data.get("ab_test") or None,
        updated_at=datetime.now(UTC),
    )
    return campaign


def preview(campaign: Campaign, locale: str) -> dict[str, str]:
    """The mail of one language as a sample subscriber would get it (subject, HTML, text)."""
    return {"locale": locale, **render_variant(campaign, locale).filled(SAMPLE_PERSON)}


__all__ = [
    "CampaignIn", "CampaignPatch", "DecideIn", "IllegalTransition", "NoLists", "NotADraft",
    "SendIn",
    "TestIn", "UnknownLists", "Unrenderable",
    "act", "create_draft", "edit_draft", "preview", "queue_test", "resolve_lists",
    "stored_template_errors", "unsaved",
]
