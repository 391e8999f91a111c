"""Saved segments: named segments staff reuse (`/api/v1/segments`, the admin's segment
builder).

A campaign may follow a saved segment (`Campaign.segment_id`) instead of holding its own.
It follows the segment as it is edited until sending starts: the freeze (`freeze_segment`,
called by `sending.start_campaign`) copies the saved segment's definition into the
campaign's `segment`, so what a campaign was sent to stays on record whatever becomes of
the saved segment.

Deleting a saved segment that a draft or a scheduled campaign follows is refused
(`SegmentInUse`, HTTP 409): those campaigns would silently lose their target. Campaigns
that already started keep their copy and are detached.

Nothing here commits: the caller commits.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..audit import record
from ..fields import BIDI_CONTROL, CONTROL
from ..models import Campaign, MailingList, SavedSegment
from . import segments
from .audience import FOLLOWING, count_audience, effective_segment

NAME_MAX = 200


def _name(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be empty.")
    if CONTROL.search(value):
        raise ValidationError("Must not contain line breaks or control characters.")
    if BIDI_CONTROL.search(value):
        raise ValidationError("Must not contain characters that change the direction of text.")


class SavedSegmentIn(segments.SegmentErrorsFlat):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=NAME_MAX), _name])
    segment = segments.SegmentField(required=True)


class SavedSegmentPatch(SavedSegmentIn):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(**kwargs)


class UnknownSegment(LookupError):
    """No saved segment has this id (HTTP 404 on its own route, 422 on `segment_id`)."""

    def __init__(self, segment_id: int) -> None:
        super().__init__(f"No saved segment {segment_id}.")


class SegmentInUse(ValueError):
    """The saved segment is followed by campaigns that have not started (HTTP 409)."""

    def __init__(self, campaign_ids: list[int]) -> None:
        shown = ", ".join(map(str, campaign_ids[:20]))
        super().__init__(f"Campaigns {shown} (draft or scheduled) use this segment; "
                         "give them another segment first.")
        self.campaign_ids = campaign_ids


def get_segment(session: Session, segment_id: int) -> SavedSegment:
    row = session.get(SavedSegment, segment_id)
    if row is None:
        raise UnknownSegment(segment_id)
    return row


def _audit(session: Session, actor: str, action: str, segment_id: int, **detail: Any) -> None:
    record(session, actor=actor, action=f"segment.{action}", object_type="segment",
           object_id=segment_id, detail=detail)


def create_segment(session: Session, data: dict[str, Any], actor: str) -> SavedSegment:
    """A new saved segment from validated `SavedSegmentIn` data (SegmentError for
    engagement filters naming no campaign)."""
    segments.check_campaigns(session, segments.parse(data["segment"]))
    row = SavedSegment(name=data["name"].strip(), segment=data["segment"], created_by=actor)
    session.add(row)
    session.flush()
    _audit(session, actor, "create", row.id)
    return row


def edit_segment(session: Session, row: SavedSegment, data: dict[str, Any], actor: str) -> None:
    if "segment" in data:
        segments.check_campaigns(session, segments.parse(data["segment"]))
        row.segment = data["segment"]
    if "name" in data:
        row.name = data["name"].strip()
    _audit(session, actor, "edit", row.id, fields=sorted(data))


def delete_segment(session: Session, row: SavedSegment, actor: str) -> None:
    """Delete, or SegmentInUse while a draft or scheduled campaign follows it; campaigns
    that started keep their frozen copy and are detached."""
    users = list(session.scalars(
        select(Campaign.id).where(Campaign.segment_id == row.id,
                                  Campaign.status.in_(FOLLOWING)).order_by(Campaign.id)))
    if users:
        raise SegmentInUse(users)
    session.execute(update(Campaign).where(Campaign.segment_id == row.id)
                    .values(segment_id=None).execution_options(synchronize_session=False))
    _audit(session, actor, "delete", row.id, name=row.name)
    session.delete(row)
    session.flush()


def segment_count(session: Session, row: SavedSegment) -> int:
    """How many confirmed subscribers (of any list) the segment selects."""
    list_ids = list(session.scalars(select(MailingList.id)))
    return count_audience(session, list_ids, row.segment)


def freeze_segment(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Copy the followed saved segment into the campaign's `segment` (at the freeze) and
    return the segment the audience is frozen with."""
    if campaign.segment_id is not None:
        row = session.get(SavedSegment, campaign.segment_id)
        if row is not None:
            campaign.segment = dict(row.segment)
            session.flush()
    return dict(campaign.segment or {})


__all__ = ["SavedSegmentIn", "SavedSegmentPatch", "SegmentInUse", "UnknownSegment",
           "create_segment", "delete_segment", "edit_segment", "effective_segment",
           "freeze_segment", "get_segment", "segment_count"]
