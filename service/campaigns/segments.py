"""Segments: who, among a campaign's lists, a campaign reaches — the one implementation.

A segment is a JSON object whose parts are all combined with AND (an empty segment
selects everyone on the lists):

    states, postal_prefixes, locales      ["NY"], ["112"], ["es"]
    counties                              ["Kings County, NY"] (county name, ", ", state)
    attributes                            {"cd": ["NY-10", "NY-12"]}: the value is one of
                                          these; {"cd": null}: no such attribute (absent,
                                          null or "")
    tags_any, tags_none                   has at least one of / none of these tags
    opened, not_opened, clicked,          {"campaigns": [id, …]}: did (did not) open /
    not_clicked, received, not_received   click / receive any of these campaigns;
                                          {"within_days": n}: any campaign delivered to
                                          that person in the last n days
    joined_after, joined_before           "YYYY-MM-DD": subscribed on or after that day /
                                          before that day (UTC)

`parse` checks a raw value and returns a typed `Segment` (or raises `SegmentError` naming
each bad part, e.g. `attributes.cd`); `check_campaigns` refuses campaign ids that name no
campaign; `conditions` turns a `Segment` into SQL conditions on `subscribers`, which
`audience.audience_query` adds to the lists, bounce and suppression conditions. The
audience count, the freeze and the admin's live count all go through that query.

Where the conditions find their rows (1M subscribers, see bench/audience.py):
- attributes on PostgreSQL: JSONB containment, `attributes::jsonb @> {"cd": "NY-10"}`
  (one per value, OR-ed), served by the GIN index `ix_subscribers_attributes_gin` on the
  expression `(attributes::jsonb)`; on SQLite a `json_each` probe of the row;
- tags: semi-joins on `ix_subscriber_tags_tag (tag, subscriber_id)`;
- counties: `ix_subscribers_county`;
- opens / clicks: the webhook's uniques, keyed (campaign_id, event, recipient) with the
  subscriber id as text; deliveries: the ledger's (campaign_id, subscriber_id) key, the
  campaigns of `within_days` narrowed first to those sending in that window.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean

from ..fields import BIDI_CONTROL, CONTROL
from ..i18n import LOCALES
from ..models import (
    Campaign,
    CampaignEventUnique,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberTag,
)

# Bounds on what a segment may hold: beyond them a segment is a mistake or an attack on
# the query planner, not a target.
MAX_ITEMS = 500          # values in any one list
MAX_ATTRIBUTES = 20      # attribute keys
MAX_CAMPAIGNS = 100      # campaign ids in one engagement filter
MAX_DAYS = 3650          # within_days
ATTRIBUTE_KEY_MAX = 100  # as the CSV import keeps them
VALUE_MAX = 200          # an attribute value
TAG_MAX = 64             # SubscriberTag.tag
COUNTY_MAX = 100         # Subscriber.county
POSTAL_PREFIX_MAX = 10
US_STATE = re.compile(r"^[A-Za-z]{2}$")
MAX_CAMPAIGN_ID = 2**31 - 1
# Up to this many values of one attribute, PostgreSQL asks the GIN index (a narrow
# target); beyond it, each row's value is read once (bench/audience.py).
GIN_VALUES_MAX = 4

LIST_PARTS = ("states", "postal_prefixes", "locales", "counties", "tags_any", "tags_none")
ENGAGEMENT_PARTS = ("opened", "not_opened", "clicked", "not_clicked", "received",
                    "not_received")
DATE_PARTS = ("joined_after", "joined_before")
PARTS = (*LIST_PARTS, "attributes", *ENGAGEMENT_PARTS, *DATE_PARTS)


class SegmentError(ValueError):
    """The segment cannot be used: `errors` maps each bad part (dotted, relative to the
    segment: `attributes.cd`, `opened.campaigns`) to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Engagement:
    """One engagement filter: campaigns by id, or those delivered in the last n days."""

    campaigns: tuple[int, ...] = ()
    within_days: int | None = None

    def as_json(self) -> dict[str, Any]:
        if self.within_days is not None:
            return {"within_days": self.within_days}
        return {"campaigns": list(self.campaigns)}


@dataclass(frozen=True)
class Segment:
    """A parsed, valid segment (see the module docstring for what each part means)."""

    states: tuple[str, ...] = ()
    postal_prefixes: tuple[str, ...] = ()
    locales: tuple[str, ...] = ()
    counties: tuple[tuple[str, str], ...] = ()
    # (key, allowed values) or (key, None) for "has no such attribute"
    attributes: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    engagement: dict[str, Engagement] = field(default_factory=dict)
    joined_after: date | None = None
    joined_before: date | None = None

    def as_json(self) -> dict[str, Any]:
        """The canonical JSON form (what is stored; parsing it again gives this segment).
        Parts left empty are left out."""
        out: dict[str, Any] = {}
        for name in ("states", "postal_prefixes", "locales"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.counties:
            out["counties"] = [f"{county}, {state}" for county, state in self.counties]
        if self.attributes:
            out["attributes"] = {k: (list(v) if v is not None else None)
                                 for k, v in self.attributes}
        for name in ("tags_any", "tags_none"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        for name in ENGAGEMENT_PARTS:
            if name in self.engagement:
                out[name] = self.engagement[name].as_json()
        if self.joined_after:
            out["joined_after"] = self.joined_after.isoformat()
        if self.joined_before:
            out["joined_before"] = self.joined_before.isoformat()
        return out

    def campaign_ids(self) -> set[int]:
        return {cid for e in self.engagement.values() for cid in e.campaigns}


# ------------------------------------------------------------------ parsing


def _text_problem(value: object, max_len: int) -> str | None:
    if not isinstance(value, str):
        return "Must be text."
    if not value.strip():
        return "Must not be empty."
    if CONTROL.search(value):
        return "Must not contain line breaks or control characters."
    if BIDI_CONTROL.search(value):
        return "Must not contain characters that change the direction of text."
    if len(value) > max_len:
        return f"At most {max_len} characters."
    return None


class _Parser:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def texts(self, path: str, raw: object, max_len: int) -> list[str]:
        if not isinstance(raw, list):
            self.fail(path, "Must be a list.")
            return []
        if len(raw) > MAX_ITEMS:
            self.fail(path, f"At most {MAX_ITEMS} items.")
            return []
        out: list[str] = []
        for item in raw:
            problem = _text_problem(item, max_len)
            if problem:
                self.fail(path, problem)
                return []
            assert isinstance(item, str)
            item = item.strip()
            if item not in out:
                out.append(item)
        return out

    def states(self, raw: object) -> tuple[str, ...]:
        values = self.texts("states", raw, 2)
        if any(not US_STATE.match(v) for v in values):
            self.fail("states", "Each state is two letters (NY).")
            return ()
        return tuple(dict.fromkeys(v.upper() for v in values))

    def locales(self, raw: object) -> tuple[str, ...]:
        values = self.texts("locales", raw, 5)
        if any(v not in LOCALES for v in values):
            self.fail("locales", f"Each must be one of: {', '.join(LOCALES)}.")
            return ()
        return tuple(values)

    def counties(self, raw: object) -> tuple[tuple[str, str], ...]:
        values = self.texts("counties", raw, COUNTY_MAX + 4)
        out: list[tuple[str, str]] = []
        for value in values:
            county, sep, state = value.rpartition(", ")
            if not sep or not county.strip() or not US_STATE.match(state):
                self.fail("counties", 'Each county is written "Kings County, NY".')
                return ()
            out.append((" ".join(county.split()), state.upper()))
        return tuple(dict.fromkeys(out))

    def attributes(self, raw: object) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
        if not isinstance(raw, dict):
            self.fail("attributes", 'Must be an object such as {"cd": ["NY-10"]}.')
            return ()
        if len(raw) > MAX_ATTRIBUTES:
            self.fail("attributes", f"At most {MAX_ATTRIBUTES} attributes.")
            return ()
        out: list[tuple[str, tuple[str, ...] | None]] = []
        for key, value in raw.items():
            problem = _text_problem(key, ATTRIBUTE_KEY_MAX)
            if problem:
                self.fail("attributes", f"Attribute name: {problem}")
                continue
            path = f"attributes.{key}"
            if value is None:
                out.append((key, None))
                continue
            values = self.texts(path, value, VALUE_MAX)
            if path in self.errors:
                continue
            if not values:
                self.fail(path, "Give at least one value, or null for “has none”.")
                continue
            out.append((key, tuple(values)))
        return tuple(out)

    def engagement(self, name: str, raw: object) -> Engagement | None:
        if not isinstance(raw, dict) or len(raw) != 1 or not (
                "campaigns" in raw or "within_days" in raw):
            self.fail(name, 'Must be {"campaigns": [id, …]} or {"within_days": n}.')
            return None
        if "within_days" in raw:
            days = raw["within_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not (
                    1 <= days <= MAX_DAYS):
                self.fail(f"{name}.within_days", f"Must be a whole number from 1 to {MAX_DAYS}.")
                return None
            return Engagement(within_days=days)
        ids = raw["campaigns"]
        path = f"{name}.campaigns"
        if not isinstance(ids, list) or not ids:
            self.fail(path, "Must be a list of campaign ids.")
            return None
        if len(ids) > MAX_CAMPAIGNS:
            self.fail(path, f"At most {MAX_CAMPAIGNS} campaigns.")
            return None
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 < i <= MAX_CAMPAIGN_ID
               for i in ids):
            self.fail(path, "Each must be a campaign id (a positive whole number).")
            return None
        return Engagement(campaigns=tuple(dict.fromkeys(ids)))

    def day(self, name: str, raw: object) -> date | None:
        if not isinstance(raw, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            self.fail(name, "Must be a date, YYYY-MM-DD.")
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.fail(name, "Must be a date, YYYY-MM-DD.")
            return None


def parse(raw: object) -> Segment:
    """A valid segment from `raw` (JSON-like), or SegmentError naming every bad part.

    None means the empty segment. Never raises anything else, whatever `raw` holds.
    """
    if raw is None:
        return Segment()
    if not isinstance(raw, dict):
        raise SegmentError({"_segment": ["Must be an object."]})
    p = _Parser()
    unknown = [k for k in raw if k not in PARTS]
    for key in unknown:
        name = key if isinstance(key, str) and len(key) <= 50 and not CONTROL.search(key) \
            and not BIDI_CONTROL.search(key) else "_segment"
        p.fail(name, f"Unknown filter. Known: {', '.join(PARTS)}.")
    kwargs: dict[str, Any] = {}
    if "states" in raw:
        kwargs["states"] = p.states(raw["states"])
    if "postal_prefixes" in raw:
        kwargs["postal_prefixes"] = tuple(
            p.texts("postal_prefixes", raw["postal_prefixes"], POSTAL_PREFIX_MAX))
    if "locales" in raw:
        kwargs["locales"] = p.locales(raw["locales"])
    if "counties" in raw:
        kwargs["counties"] = p.counties(raw["counties"])
    if "attributes" in raw:
        kwargs["attributes"] = p.attributes(raw["attributes"])
    for name in ("tags_any", "tags_none"):
        if name in raw:
            kwargs[name] = tuple(p.texts(name, raw[name], TAG_MAX))
    engagement: dict[str, Engagement] = {}
    for name in ENGAGEMENT_PARTS:
        if name in raw:
            parsed = p.engagement(name, raw[name])
            if parsed is not None:
                engagement[name] = parsed
    for name in DATE_PARTS:
        if name in raw and raw[name] not in (None, ""):
            kwargs[name] = p.day(name, raw[name])
    if p.errors:
        raise SegmentError(p.errors)
    return Segment(engagement=engagement, **kwargs)


def check_campaigns(session: Session, segment: Segment) -> None:
    """SegmentError naming each engagement filter that names a campaign that is not there."""
    wanted = segment.campaign_ids()
    if not wanted:
        return
    known = set(session.scalars(select(Campaign.id).where(Campaign.id.in_(wanted))))
    errors = {}
    for name, e in segment.engagement.items():
        missing = [cid for cid in e.campaigns if cid not in known]
        if missing:
            errors[f"{name}.campaigns"] = [
                f"No such campaign: {', '.join(map(str, missing[:10]))}."]
    if errors:
        raise SegmentError(errors)


def load(session: Session, raw: object) -> Segment:
    """`parse` and `check_campaigns`: the whole check of a segment from outside."""
    segment = parse(raw)
    check_campaigns(session, segment)
    return segment


# ------------------------------------------------------------------ schemas


class SegmentField(fields.Field):
    """A segment (`segments.parse`), loaded into its canonical JSON; its errors name the
    part (`{"attributes.cd": [...]}`, flattened by `SegmentErrorsFlat` to
    `segment.attributes.cd`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse(value).as_json()
        except SegmentError as exc:
            raise ValidationError(exc.errors) from None


class SegmentErrorsFlat(Schema):
    """A schema with a `segment` field answers its errors under dotted names:
    `{"segment.attributes.cd": [...]}` (a whole-segment error under `segment`)."""

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        messages = error.messages
        if isinstance(messages, dict) and isinstance(messages.get("segment"), dict):
            flat: dict[str, Any] = {k: v for k, v in messages.items() if k != "segment"}
            for key, value in messages["segment"].items():
                flat["segment" if key == "_segment" else f"segment.{key}"] = value
            raise ValidationError(flat) from error



# ------------------------------------------------------------------ SQL


class _AttributeIs(FunctionElement[bool]):
    """The subscriber's attribute `key` is one of `values` (strings), or, with no values,
    the subscriber has no such attribute (absent, null or ""). Rendered per dialect."""

    type = Boolean()
    inherit_cache = False
    name = "attribute_is"

    def __init__(self, column: Any, key: str,
                 values: tuple[str, ...] | None) -> None:
        self.key = key
        self.values = values
        super().__init__(column)


@compiles(_AttributeIs, "postgresql")
def _attribute_pg(element: _AttributeIs, compiler: Any, **kw: Any) -> str:
    column = list(element.clauses)[0]
    key = literal(element.key)
    if element.values is None:
        expr: ColumnElement[bool] = func.coalesce(column.op("->>")(key), "") == ""
    elif len(element.values) > GIN_VALUES_MAX:
        # Many values: a broad target, read row by row; one cast per row is far cheaper
        # there than a json → jsonb cast per value, and jsonb equality keeps "5" apart
        # from 5 as containment does (and lets the planner expect many rows).
        expr = cast(column, JSONB).op("->")(key).in_(
            [cast(literal(json.dumps(v)), JSONB) for v in element.values])
    else:
        # One containment per value: each is a lookup in the GIN index on
        # (attributes::jsonb), OR-ed in a BitmapOr.
        as_jsonb = cast(column, JSONB)
        expr = or_(*(as_jsonb.op("@>")(cast(literal(json.dumps({element.key: v})), JSONB))
                     for v in element.values))
    # Parenthesised: the condition is one term of the audience's AND.
    return f"({compiler.process(expr, **kw)})"


@compiles(_AttributeIs)
def _attribute_sqlite(element: _AttributeIs, compiler: Any, **kw: Any) -> str:
    column = list(element.clauses)[0]
    each = func.json_each(column).table_valued("key", "value", "type").alias("attr")
    if element.values is None:
        present = exists().select_from(each).where(
            each.c.key == element.key, each.c.type != "null",
            ~and_(each.c.type == "text", each.c.value == ""))
        return str(compiler.process(~present, **kw))
    match = exists().select_from(each).where(
        each.c.key == element.key, each.c.type == "text", each.c.value.in_(element.values))
    return str(compiler.process(match, **kw))


def _recent_campaigns(cutoff: datetime) -> Any:
    """Ids of campaigns that may have delivered something since `cutoff`: started, and not
    finished a day before it (a superset: each delivery's own `sent_at` decides)."""
    return select(Campaign.id).where(
        Campaign.started_at.is_not(None),
        or_(Campaign.finished_at.is_(None), Campaign.finished_at >= cutoff - timedelta(days=1)),
    )


def _delivered(cutoff: datetime | None, campaign_ids: tuple[int, ...]) -> Any:
    """exists(a sent delivery to this subscriber, of these campaigns or since cutoff)."""
    conditions: list[Any] = [
        Delivery.subscriber_id == Subscriber.id,
        Delivery.status == DeliveryStatus.sent,
    ]
    if cutoff is not None:
        conditions += [Delivery.campaign_id.in_(_recent_campaigns(cutoff)),
                       Delivery.sent_at >= cutoff]
    else:
        conditions.append(Delivery.campaign_id.in_(campaign_ids))
    return exists().where(*conditions)


def _did(event: str, e: Engagement, now: datetime) -> Any:
    """exists(an `event` unique by this subscriber, for the campaigns `e` names)."""
    recipient = cast(Subscriber.id, String)
    if e.within_days is None:
        return exists().where(CampaignEventUnique.campaign_id.in_(e.campaigns),
                              CampaignEventUnique.event == event,
                              CampaignEventUnique.recipient == recipient)
    cutoff = now - timedelta(days=e.within_days)
    return exists().where(
        Delivery.subscriber_id == Subscriber.id,
        Delivery.status == DeliveryStatus.sent,
        Delivery.campaign_id.in_(_recent_campaigns(cutoff)),
        Delivery.sent_at >= cutoff,
        # (through the delivery's own subscriber id: the same person, and no third
        # level of correlation for the planner)
        exists().where(CampaignEventUnique.campaign_id == Delivery.campaign_id,
                       CampaignEventUnique.event == event,
                       CampaignEventUnique.recipient == cast(Delivery.subscriber_id, String)),
    )


def _engagement(name: str, e: Engagement, now: datetime) -> Any:
    negated = name.startswith("not_")
    what = name.removeprefix("not_")
    if what == "received":
        cutoff = now - timedelta(days=e.within_days) if e.within_days is not None else None
        condition = _delivered(cutoff, e.campaigns)
    else:
        condition = _did({"opened": "open", "clicked": "click"}[what], e, now)
    return ~condition if negated else condition


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def conditions(segment: Segment, now: datetime | None = None) -> list[Any]:
    """SQL conditions on `subscribers` for every part of the segment (AND them)."""
    now = now or datetime.now(UTC)
    out: list[Any] = []
    if segment.states:
        out.append(Subscriber.state.in_(segment.states))
    if segment.postal_prefixes:
        out.append(or_(*(Subscriber.postal_code.startswith(p, autoescape=True)
                         for p in segment.postal_prefixes)))
    if segment.locales:
        out.append(Subscriber.locale.in_(segment.locales))
    if segment.counties:
        # One term per state, `county IN (…)` inside: a short OR even for many counties.
        by_state: dict[str, list[str]] = {}
        for county, state in segment.counties:
            by_state.setdefault(state, []).append(county)
        out.append(or_(*(and_(Subscriber.state == state, Subscriber.county.in_(names))
                         for state, names in by_state.items())))
    for key, values in segment.attributes:
        out.append(_AttributeIs(Subscriber.__table__.c.attributes, key, values))
    if segment.tags_any:
        out.append(exists().where(SubscriberTag.tag.in_(segment.tags_any),
                                  SubscriberTag.subscriber_id == Subscriber.id))
    if segment.tags_none:
        out.append(~exists().where(SubscriberTag.tag.in_(segment.tags_none),
                                   SubscriberTag.subscriber_id == Subscriber.id))
    for name, e in segment.engagement.items():
        out.append(_engagement(name, e, now))
    if segment.joined_after:
        out.append(Subscriber.created_at >= _day_start(segment.joined_after))
    if segment.joined_before:
        out.append(Subscriber.created_at < _day_start(segment.joined_before))
    if segment.joined_after and segment.joined_before and \
            segment.joined_after >= segment.joined_before:
        out.append(false())
    return out


def stored(raw: object) -> Segment:
    """A segment as stored on a campaign or a saved segment. Stored segments were checked
    when written; one that no longer parses (written around the API) selects nobody
    rather than everybody."""
    try:
        return parse(raw or {})
    except SegmentError:
        return Segment(joined_after=date.max, joined_before=date.min)


__all__ = ["Engagement", "Segment", "SegmentError", "SegmentErrorsFlat", "SegmentField",
           "check_campaigns", "conditions", "load", "parse", "stored"]
