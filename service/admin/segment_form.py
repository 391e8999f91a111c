"""The campaign editor's segment builder: form fields ⇄ a segment's JSON, and the saved
segments the builder saves, loads and updates (JSON answers for the editor's script).

The builder only turns fields into the segment JSON the API takes; `campaigns.segments`
checks it (the same messages as the API) and `campaigns.saved` stores it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import db
from ..campaigns import saved, segments
from ..models import Campaign, Role, SavedSegment
from .access import actor, found_by_id, staff_required
from .blueprint import bp

_WORDS = re.compile(r"[\s,;]+")
_LINES = re.compile(r"[;\n]+")
ATTRIBUTE_ROWS = 3  # empty rows offered below the ones in use
ENGAGEMENT_LABELS = {
    "opened": "Opened", "not_opened": "Did not open", "clicked": "Clicked",
    "not_clicked": "Did not click", "received": "Received", "not_received": "Did not receive",
}
CHOICE_CAMPAIGNS = 50


def words(text: str) -> list[str]:
    """The items of a typed list: separated by spaces, commas or semicolons."""
    return [w for w in _WORDS.split(text.strip()) if w]


def _items(text: str) -> list[str]:
    """Counties are separated by `;` or line breaks (each holds a comma)."""
    return [w.strip() for w in _LINES.split(text) if w.strip()]


def segment_form_values(form: Any) -> dict[str, Any]:
    """The builder's fields as typed (to show the form again)."""
    rows = []
    for i in range(segments.MAX_ATTRIBUTES + ATTRIBUTE_ROWS):
        if f"attr_key_{i}" not in form:
            continue
        rows.append({"key": form.get(f"attr_key_{i}", ""),
                     "values": form.get(f"attr_values_{i}", ""),
                     "none": bool(form.get(f"attr_none_{i}"))})
    return {
        "states": form.get("states", ""), "postal_prefixes": form.get("postal_prefixes", ""),
        "locales": form.getlist("locales"), "counties": form.get("counties", ""),
        "tags_any": form.get("tags_any", ""), "tags_none": form.get("tags_none", ""),
        "attributes": _padded(rows),
        "engagement": {name: {"campaigns": form.getlist(f"{name}_campaigns"),
                              "days": form.get(f"{name}_days", "")}
                       for name in segments.ENGAGEMENT_PARTS},
        "joined_after": form.get("joined_after", ""),
        "joined_before": form.get("joined_before", ""),
        "segment_id": form.get("segment_id", ""),
    }


def _padded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    used = [r for r in rows if r["key"] or r["values"] or r["none"]]
    return used + [{"key": "", "values": "", "none": False}] * ATTRIBUTE_ROWS


def segment_values(segment: dict[str, Any], segment_id: int | None = None) -> dict[str, Any]:
    """A stored segment as the builder's fields."""
    engagement = {}
    for name in segments.ENGAGEMENT_PARTS:
        part = segment.get(name) or {}
        engagement[name] = {"campaigns": [str(c) for c in part.get("campaigns") or []],
                            "days": str(part.get("within_days") or "")}
    rows = [{"key": key, "values": ", ".join(values or []), "none": values is None}
            for key, values in (segment.get("attributes") or {}).items()]
    return {
        "states": ", ".join(segment.get("states") or []),
        "postal_prefixes": ", ".join(segment.get("postal_prefixes") or []),
        "locales": list(segment.get("locales") or []),
        "counties": "; ".join(segment.get("counties") or []),
        "tags_any": ", ".join(segment.get("tags_any") or []),
        "tags_none": ", ".join(segment.get("tags_none") or []),
        "attributes": _padded(rows),
        "engagement": engagement,
        "joined_after": segment.get("joined_after") or "",
        "joined_before": segment.get("joined_before") or "",
        "segment_id": str(segment_id or ""),
    }


def _number(text: str) -> Any:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else text


def segment_input(values: dict[str, Any]) -> dict[str, Any]:
    """The builder's fields → the segment JSON the API takes (empty parts left out;
    whatever was typed goes to the parser, which names what is wrong)."""
    out: dict[str, Any] = {}
    if words(values["states"]):
        out["states"] = [s.upper() for s in words(values["states"])]
    if words(values["postal_prefixes"]):
        out["postal_prefixes"] = words(values["postal_prefixes"])
    if values["locales"]:
        out["locales"] = list(values["locales"])
    if _items(values["counties"]):
        out["counties"] = _items(values["counties"])
    attributes: dict[str, Any] = {}
    for row in values["attributes"]:
        key = row["key"].strip()
        if not key:
            continue
        attributes[key] = None if row["none"] else [
            v.strip() for v in row["values"].split(",") if v.strip()]
    if attributes:
        out["attributes"] = attributes
    for name in ("tags_any", "tags_none"):
        if words(values[name]):
            out[name] = words(values[name])
    for name, part in values["engagement"].items():
        rule: dict[str, Any] = {}
        if part["campaigns"]:
            rule["campaigns"] = [_number(c) for c in part["campaigns"]]
        if part["days"].strip():
            rule["within_days"] = _number(part["days"])
        if rule:
            out[name] = rule
    for name in ("joined_after", "joined_before"):
        if values[name].strip():
            out[name] = values[name].strip()
    return out


def segment_error_field(dotted: str) -> str:
    """The builder's group for a segment error (`segment.attributes.cd` → `attributes`)."""
    parts = dotted.split(".")
    if parts[0] == "segment" and len(parts) > 1:
        return parts[1] if parts[1] != "_segment" else "segment"
    return dotted


def builder_choices(session: Session) -> dict[str, Any]:
    """What the builder offers: saved segments, and campaigns that have started (for
    the engagement filters), newest first."""
    return {
        "saved_segments": list(session.execute(
            select(SavedSegment.id, SavedSegment.name).order_by(SavedSegment.name).limit(500))),
        "sent_campaigns": list(session.execute(
            select(Campaign.id, Campaign.name).where(Campaign.started_at.is_not(None))
            .order_by(Campaign.id.desc()).limit(CHOICE_CAMPAIGNS))),
        "engagement_labels": ENGAGEMENT_LABELS,
    }


# ------------------------------------------------------------------ saved segments


def _errors(exc: segments.SegmentError) -> dict[str, str]:
    return {segment_error_field(f"segment.{k}"): " ".join(v) for k, v in exc.errors.items()}


def _save(row: SavedSegment | None) -> Any:
    values = segment_form_values(request.form)
    raw: dict[str, Any] = {"segment": segment_input(values)}
    name = request.form.get("segment_name", "")
    if row is None or name.strip():
        raw["name"] = name
    schema = saved.SavedSegmentIn() if row is None else saved.SavedSegmentPatch()
    try:
        data = schema.load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {}
        return jsonify({"errors": {
            ("segment_name" if key == "name" else segment_error_field(str(key))):
            " ".join(map(str, value)) if isinstance(value, list) else str(value)
            for key, value in messages.items()}}), 422
    session = db.session()
    try:
        if row is None:
            row = saved.create_segment(session, data, actor())
        else:
            saved.edit_segment(session, row, data, actor())
    except segments.SegmentError as exc:
        session.rollback()
        return jsonify({"errors": _errors(exc)}), 422
    session.commit()
    return jsonify({"id": row.id, "name": row.name, "segment": row.segment})


@bp.post("/segments")
@staff_required(Role.campaigner)
def segment_create() -> Any:
    """Save the builder's filters as a new named segment (JSON for the editor)."""
    return _save(None)


@bp.post("/segments/<int:segment_id>")
@staff_required(Role.campaigner)
def segment_update(segment_id: int) -> Any:
    """Replace a saved segment's filters (and its name, when one is given)."""
    return _save(found_by_id(SavedSegment, segment_id))


@bp.get("/segments/<int:segment_id>")
@staff_required(Role.viewer)
def segment_json(segment_id: int) -> Any:
    """A saved segment and the builder's fields for it (the editor's "Load")."""
    row = found_by_id(SavedSegment, segment_id)
    values = segment_values(row.segment)
    return jsonify({"id": row.id, "name": row.name, "segment": row.segment,
                    "values": values})
