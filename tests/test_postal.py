"""ZIP codes → state, county and IANA time zone, from the zipcodes dataset."""

from __future__ import annotations

import zoneinfo

import pytest

from service.postal import DATASET_VERSION, NOWHERE, Place, place_for, places, state_for


@pytest.mark.parametrize("code", ["11201", "11201-2345", "112012345", "11201 2345",
                                  " 11201 "])
def test_zip_zip_plus_4_and_nine_digits(code: str) -> None:
    assert place_for(code) == Place("NY", "Kings County", "America/New_York")
    assert state_for(code) == "NY"


@pytest.mark.parametrize("code", ["", "1120", "112011", "11201-23", "00000", "SW1A 1AA",
                                  "K1A 0B1", "ABCDE", "１１２０１", "11201-2345-6"])
def test_unknown_malformed_and_foreign_codes_are_nowhere(code: str) -> None:
    assert place_for(code) == NOWHERE
    assert state_for(code) == ""


def test_places_across_the_country() -> None:
    assert place_for("94110") == Place("CA", "San Francisco County", "America/Los_Angeles")
    assert place_for("60614") == Place("IL", "Cook County", "America/Chicago")
    assert place_for("96799").state == "AS"
    assert place_for("00601").timezone == "America/Puerto_Rico"
    assert place_for("09001") == Place("AE", "", "")  # military: a state, nothing else
    # The one dataset row naming a town instead of a zone is corrected.
    assert place_for("99634") == Place("AK", "Bethel Census Area", "America/Anchorage")


def test_the_table_is_the_whole_dataset_with_valid_zones() -> None:
    table = places()
    assert DATASET_VERSION == "3.0.0"
    assert len(table) == 42_789
    assert all(len(z) == 5 and z.isdigit() for z in table)
    zones = {p.timezone for p in table.values()} - {""}
    assert zones <= zoneinfo.available_timezones()
    assert len(zones) > 30
    assert places() is table  # built once per process
