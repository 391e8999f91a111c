"""Where a US ZIP code is: its state, county and IANA time zone.

The places come from the `zipcodes` package (pinned in pyproject.toml; version 3.0.0 holds
42,789 ZIP codes, each with its state, county and time zone). Its own look-up scans the
whole table (about 1 ms per call), far too slow for an import of a million rows, so the
first call in a process builds one dict ZIP5 → `Place` (about 0.4 s; the dataset itself
takes about 37 MiB once loaded, the dict about 4 MiB more, its 3,348 distinct places
shared between ZIPs) and every later call is a dict look-up. The worker builds it before
it forks (`warm`).

A ZIP the dataset does not know, a malformed one and a non-US postal code all give
`NOWHERE` (every part ""): nothing is guessed. Military ZIPs (AA, AE, AP) have a state but
no county or time zone. A time zone name that is not in the IANA database is stored as ""
(one dataset row names a town instead of a zone; it is corrected below).
"""

from __future__ import annotations

import re
import threading
import zoneinfo
from dataclasses import dataclass

DATASET = "zipcodes"
DATASET_VERSION = "3.0.0"


@dataclass(frozen=True, slots=True)
class Place:
    state: str
    county: str
    timezone: str


NOWHERE = Place("", "", "")

_ZIP = re.compile(r"^([0-9]{5})(?:[- ]?[0-9]{4})?$")
# Rows of the dataset whose time zone is not an IANA name, with the zone they mean
# (99634 Napakiak, Bethel Census Area, AK is on Alaska time).
_ZONE_FIXES = {"Napakiak": "America/Anchorage"}

_table: dict[str, Place] | None = None
_lock = threading.Lock()


def normalise_postal_code(value: str) -> str:
    return " ".join(value.split()).upper()


def zip5(postal_code: str) -> str:
    """The five-digit ZIP of a ZIP, ZIP+4 (`12345-6789`, `12345 6789`) or 9-digit code,
    or "" when `postal_code` is none of these."""
    match = _ZIP.match(postal_code.strip())
    return match.group(1) if match else ""


def _build() -> dict[str, Place]:
    from zipcodes import _zipcodes  # the compiled table; the Python wrapper adds nothing here

    zones = zoneinfo.available_timezones()
    shared: dict[Place, Place] = {}
    table: dict[str, Place] = {}
    # By two-digit prefix: a hundred small lists of the dataset's dicts instead of one
    # of 42,789 at once keeps the build's peak memory low.
    for prefix in range(100):
        for row in _zipcodes.similar_to(f"{prefix:02d}"):
            zone = _ZONE_FIXES.get(row["timezone"], row["timezone"])
            place = Place(row["state"] or "", row["county"] or "",
                          zone if zone in zones else "")
            table[row["zip_code"]] = shared.setdefault(place, place)
    return table


def places() -> dict[str, Place]:
    """ZIP5 → Place for every ZIP the dataset knows, built once per process."""
    global _table
    table = _table
    if table is None:
        with _lock:
            if _table is None:
                _table = _build()
            table = _table
    return table


def warm() -> None:
    """Build the table now (a forking worker builds it once, before its children)."""
    places()


def place_for(postal_code: str) -> Place:
    """State, county and time zone of a US ZIP code; `NOWHERE` when unknown."""
    code = zip5(postal_code) if postal_code else ""
    if not code:
        return NOWHERE
    return places().get(code, NOWHERE)


def state_for(postal_code: str) -> str:
    """Two-letter state of a US ZIP code, or "" when unknown or not a ZIP."""
    return place_for(postal_code).state


def place_columns(postal_code: str) -> dict[str, str]:
    """The subscriber columns a postal code decides: `state`, `county`, `timezone`."""
    place = place_for(postal_code)
    return {"state": place.state, "county": place.county, "timezone": place.timezone}
