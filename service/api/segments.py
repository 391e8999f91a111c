"""Staff REST API for saved segments (/api/v1/segments…): thin views over
`campaigns.saved`.

viewer: read (a segment's `count` is over every confirmed subscriber, all lists);
campaigner: create, edit, delete. Bad input 422 naming the part
(`{"errors": {"segment.attributes.cd": [...]}}`); deleting a segment that a draft or a
scheduled campaign follows: 409.
"""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import abort
from sqlalchemy import select

from .. import db
from ..auth import require_role
from ..campaigns import saved
from ..campaigns.segments import SegmentError
from ..extensions import ApiBlueprint
from ..models import Role, SavedSegment
from .refusals import found, refused_as

blp = ApiBlueprint("segments_api", __name__, url_prefix="/api/v1", description="Segments")


def segment_out(row: SavedSegment, count: int | None = None) -> dict[str, Any]:
    out = {"id": row.id, "name": row.name, "segment": row.segment,
           "created_by": row.created_by, "created_at": row.created_at.isoformat(),
           "updated_at": row.updated_at.isoformat()}
    if count is not None:
        out["count"] = count
    return out


def refuse_segment(exc: SegmentError) -> None:
    """422 with each bad part of the segment under `segment.<part>`."""
    db.session().rollback()
    abort(422, errors={f"segment.{k}": v for k, v in exc.errors.items()})


def _get(segment_id: int) -> SavedSegment:
    return found(db.session().get(SavedSegment, segment_id), "No such segment.")


@blp.route("/segments", methods=["POST"])
@require_role(Role.campaigner)
@blp.arguments(saved.SavedSegmentIn)
def create_segment(data: dict[str, Any]) -> Any:
    session = db.session()
    try:
        row = saved.create_segment(session, data, g.actor)
    except SegmentError as exc:
        refuse_segment(exc)
    session.commit()
    return segment_out(row), 201


@blp.route("/segments", methods=["GET"])
@require_role(Role.viewer)
def list_segments() -> Any:
    rows = db.session().scalars(select(SavedSegment).order_by(SavedSegment.name,
                                                              SavedSegment.id).limit(500))
    return [segment_out(row) for row in rows]


@blp.route("/segments/<int:segment_id>", methods=["GET"])
@require_role(Role.viewer)
def get_segment(segment_id: int) -> Any:
    row = _get(segment_id)
    return segment_out(row, saved.segment_count(db.session(), row))


@blp.route("/segments/<int:segment_id>", methods=["PATCH"])
@require_role(Role.campaigner)
@blp.arguments(saved.SavedSegmentPatch)
def edit_segment(data: dict[str, Any], segment_id: int) -> Any:
    session = db.session()
    row = _get(segment_id)
    try:
        saved.edit_segment(session, row, data, g.actor)
    except SegmentError as exc:
        refuse_segment(exc)
    session.commit()
    return segment_out(row)


@blp.route("/segments/<int:segment_id>", methods=["DELETE"])
@require_role(Role.campaigner)
def delete_segment(segment_id: int) -> Any:
    session = db.session()
    row = _get(segment_id)
    with refused_as(saved.SegmentInUse, 409):
        saved.delete_segment(session, row, g.actor)
    session.commit()
    return "", 204
