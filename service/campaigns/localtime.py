"""Local-hour delivery: one wall-clock time, read in each recipient's own time zone.

`POST /api/v1/campaigns/<id>/send {"send_at_local": "2027-06-01T09:00"}` freezes the
audience at once (like a send now) but groups its batches by the recipients' time zone
(`subscribers.timezone`, IANA, from the postal code) and gives every batch of a zone the
moment that wall-clock time happens there (`batches.not_before`). Unknown or invalid
zones use `DEFAULT_TIMEZONE` (default `America/New_York`). A zone where the moment has
already passed is sent at once.

Everything here is a pure function of its arguments (no clock, no database), so the
instants can be checked against known UTC offsets.

Clock changes (zoneinfo, PEP 495):

- a wall time that happens twice (the hour after a fall-back, 01:30 on the first Sunday
  of November in the US) is read with `fold=0`: the first time it happens (daylight
  time);
- a wall time that does not happen (the hour skipped by a spring-forward, 02:30 on the
  second Sunday of March in the US) is read with the offset before the change, which
  moves it forward by the length of the gap: 02:30 is sent at 03:30 daylight time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# How far ahead a local-hour send may be: the audience is frozen when it is requested,
# so a later date would send to a list that no longer matches (and keep a campaign
# "sending" for weeks). Two weeks covers "next Tuesday 9:00" with room to spare.
LOCAL_HORIZON = timedelta(days=14)
# A wall time this long past is past in every time zone on earth (UTC-12 … UTC+14): a
# typo rather than "send at once".
LOCAL_PAST_LIMIT = timedelta(days=1)
FALLBACK_TIMEZONE = "America/New_York"

_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class BadLocalTime(ValueError):
    """Not a "YYYY-MM-DDTHH:MM" wall time, or too far from now (422 on `send_at_local`)."""


def parse_local(value: object) -> datetime:
    """The naive wall time of a "YYYY-MM-DDTHH:MM" string (exactly that form, ASCII only)."""
    if not isinstance(value, str) or not value.isascii() or not _FORMAT.fullmatch(value):
        raise BadLocalTime("Give a local date and time as YYYY-MM-DDTHH:MM.")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise BadLocalTime("Not a valid date and time.") from None


def check_window(wall: datetime, now: datetime) -> None:
    """Refuse a wall time more than `LOCAL_HORIZON` ahead of, or `LOCAL_PAST_LIMIT` behind,
    `now` (aware) read as UTC: a margin of a day on either side covers every zone."""
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    if wall - naive_now > LOCAL_HORIZON:
        raise BadLocalTime(f"Schedule a local-hour send at most {LOCAL_HORIZON.days} days ahead.")
    if naive_now - wall > LOCAL_PAST_LIMIT:
        raise BadLocalTime("This time has already passed in every time zone.")


@cache
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None for "" or a name zoneinfo does not know."""
    if not name or len(name) > 64 or not name.isascii() or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def resolve_zone(name: str, default: str) -> ZoneInfo:
    """`name`'s zone, else `default`'s, else America/New_York."""
    return zone(name) or zone(default) or ZoneInfo(FALLBACK_TIMEZONE)


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC moment the naive `wall` time happens in `tz` (the module's docstring says
    how a skipped or repeated wall time is read)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def due_at(wall: datetime, zone_name: str, default: str, now: datetime) -> datetime | None:
    """When the recipients of `zone_name` get the mail: None for "at once" (the moment
    has passed there, or is now)."""
    at = instant(wall, resolve_zone(zone_name, default))
    return at if at > now else None
