"""The importer's merge rules, without a database: one row per address whatever its case,
duplicates in a file merged first-value-wins, problems counted apart, a known person's
blanks filled but never their details overwritten, and who is refused."""

from __future__ import annotations

import io
import json

import pytest

from service.imports.csvfile import Problem, Row, rows
from service.imports.importer import (
    REFUSED,
    UNSUBSCRIBED,
    Known,
    dedupe_chunk,
    filled_details,
    subscription_step,
)
from service.models import SubscriptionStatus, SuppressionReason

HEADER = "email,first_name,last_name,zip,state,language,chapter,status\r\n"


def parse(*lines: str) -> list[Row | Problem]:
    return list(rows(io.StringIO(HEADER + "".join(f"{line}\r\n" for line in lines),
                                 newline="")))


def row(**changes: object) -> Row:
    fields: dict[str, object] = {
        "line": 2, "email": "ana@example.org", "key": "ana@example.org", "first_name": "",
        "last_name": "", "postal_code": "", "state": "", "locale": "", "attributes": {},
    }
    fields.update(changes)
    return Row(**fields)  # type: ignore[arg-type]


def known(**changes: object) -> Known:
    fields: dict[str, object] = {"id": 5, "first_name": "", "last_name": "", "postal_code": "",
                                 "state": "", "attributes": "{}"}
    fields.update(changes)
    return Known(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- duplicates in a file


def test_the_same_address_in_any_case_is_one_person_first_values_winning() -> None:
    chunk = parse(
        "Ana@Example.ORG,Ana,,,,,North,",
        "ana@example.org,Anabel,Ruiz,94110,,es,South,",
        "ANA@EXAMPLE.ORG,,,10001,NY,en,,",
    )
    merged, problems, counts = dedupe_chunk(chunk)
    assert list(merged) == ["ana@example.org"]
    ana = merged["ana@example.org"]
    assert (ana.line, ana.email) == (2, "Ana@example.org")  # the first line, as written there
    assert (ana.first_name, ana.last_name) == ("Ana", "Ruiz")  # blanks taken from later rows
    assert (ana.postal_code, ana.state, ana.locale) == ("94110", "CA", "es")
    assert ana.attributes == {"chapter": "North"}
    assert problems == []
    assert (counts.rows, counts.skipped, counts.created, counts.updated) == (3, 2, 0, 0)


def test_different_addresses_stay_apart_in_file_order() -> None:
    merged, _problems, counts = dedupe_chunk(parse("b@example.org,B,,,,,,", "a@example.org,A,,,,,,"))
    assert list(merged) == ["b@example.org", "a@example.org"]
    assert counts.skipped == 0


def test_problems_are_kept_apart_and_counted_refused_or_invalid() -> None:
    chunk = parse(
        "not-an-address,X,,,,,,",
        "left@example.org,L,,,,,,unsubscribed",
        ",nobody,,,,,,",
        "ok@example.org,Ok,,,,,,",
        "ok@example.org,Again,,,,,,",
    )
    merged, problems, counts = dedupe_chunk(chunk)
    assert list(merged) == ["ok@example.org"] and merged["ok@example.org"].first_name == "Ok"
    assert [(p.line, p.refused) for p in problems] == [(2, False), (3, True), (4, False)]
    assert problems[1].reason == "marked unsubscribed in the file"
    assert problems[2].reason == "no email address"
    assert (counts.rows, counts.invalid, counts.refused, counts.skipped) == (5, 2, 1, 1)


def test_attributes_of_duplicates_are_merged_first_value_winning() -> None:
    first = row(attributes={"Chapter": "North"})
    later = row(line=9, attributes={"Chapter": "South", "Shirt": "M"})
    merged, _problems, _counts = dedupe_chunk([first, later])
    assert merged["ana@example.org"].attributes == {"Chapter": "North", "Shirt": "M"}


def test_an_empty_chunk() -> None:
    merged, problems, counts = dedupe_chunk([])
    assert (merged, problems, counts.rows) == ({}, [], 0)


# ---------------------------------------------------------------- a known person


def test_blanks_are_filled_and_nothing_is_overwritten() -> None:
    details = filled_details(
        known(first_name="Ana", postal_code="10001", state="NY"),
        row(first_name="Anabel", last_name="Ruiz", postal_code="94110", state="CA"),
    )
    assert details == {"first_name": "Ana", "last_name": "Ruiz", "postal_code": "10001",
                       "state": "NY", "county": "", "timezone": "", "attributes": {}}


def test_nothing_to_fill_changes_nothing() -> None:
    full = known(first_name="Ana", last_name="Ruiz", postal_code="10001", state="NY",
                 attributes=json.dumps({"Chapter": "North"}))
    assert filled_details(full, row()) is None
    assert filled_details(full, row(first_name="Other", last_name="Name", postal_code="94110",
                                    state="CA", attributes={"Chapter": "South"})) is None


def test_a_postal_code_filled_in_brings_its_state() -> None:
    """A state without a postal code is replaced by the state of the code the file brings
    (they must agree); a state is kept when the file has none."""
    details = filled_details(known(state="NY"), row(postal_code="94110", state="CA"))
    assert details is not None
    assert (details["postal_code"], details["state"]) == ("94110", "CA")
    details = filled_details(known(state="NY"), row(postal_code="SW1A 1AA"))
    assert details is not None
    assert (details["postal_code"], details["state"]) == ("SW1A 1AA", "NY")


def test_a_missing_state_is_filled_even_when_the_postal_code_is_known() -> None:
    details = filled_details(known(postal_code="K1A 0B1"), row(postal_code="94110", state="CA"))
    assert details is not None
    assert (details["postal_code"], details["state"]) == ("K1A 0B1", "CA")


def test_attributes_are_added_never_replaced() -> None:
    details = filled_details(known(attributes=json.dumps({"Chapter": "North"})),
                             row(attributes={"Chapter": "South", "Shirt": "M"}))
    assert details is not None
    assert details["attributes"] == {"Chapter": "North", "Shirt": "M"}


def test_a_name_filled_in_keeps_the_stored_attributes() -> None:
    details = filled_details(known(attributes=json.dumps({"Chapter": "North"})),
                             row(first_name="Ana"))
    assert details is not None
    assert (details["first_name"], details["attributes"]) == ("Ana", {"Chapter": "North"})


def test_stored_attributes_that_are_not_an_object_are_replaced_by_the_files() -> None:
    details = filled_details(known(attributes="[1, 2]"), row(attributes={"Shirt": "M"}))
    assert details is not None and details["attributes"] == {"Shirt": "M"}


# ---------------------------------------------------------------- their subscription


@pytest.mark.parametrize(
    "status, confirmed, step",
    [
        (None, False, "add"),
        (None, True, "add"),
        (SubscriptionStatus.unsubscribed, False, "refuse"),
        (SubscriptionStatus.unsubscribed, True, "refuse"),
        (SubscriptionStatus.pending, True, "confirm"),
        (SubscriptionStatus.pending, False, "keep"),
        (SubscriptionStatus.confirmed, True, "keep"),
        (SubscriptionStatus.confirmed, False, "keep"),
    ],
)
def test_subscription_step(status: SubscriptionStatus | None, confirmed: bool, step: str) -> None:
    assert subscription_step(status, confirmed) == step


def test_every_suppression_reason_refuses_with_its_own_words() -> None:
    assert set(REFUSED) == set(SuppressionReason)
    assert all(text.startswith("refused: ") for text in REFUSED.values())
    assert len(set(REFUSED.values())) == len(REFUSED)
    assert "erased" in REFUSED[SuppressionReason.erased]
    assert UNSUBSCRIBED.startswith("refused: unsubscribed")
