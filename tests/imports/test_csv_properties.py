"""Property tests of the CSV importer: whatever the file, a clean import or clear problems.

Hypothesis writes files from hostile parts (formulas, control and bidi characters, quotes,
line breaks, long cells, odd headers, other encodings): reading one either refuses the
whole file with a `FileError` that says why, or yields for every line a valid `Row` or a
`Problem` with its line and reason, and never raises anything else. Through the importer
(merge rules included) nothing invalid is stored. Budget: a few seconds, parsing without
a database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service import db
from service.fields import CONTROL, NAME_MAX, POSTAL_MAX, clean_text
from service.i18n import LOCALES
from service.imports.csvfile import (
    ATTRIBUTE_MAX,
    ATTRIBUTES_MAX,
    FORMULA_START,
    FileError,
    Problem,
    Row,
    quote_formula,
    rows,
    scan,
    unquote_formula,
)
from service.imports.export import csv_blocks
from service.imports.importer import ImportOptions, run_import
from service.models import Subscriber, SubscriptionStatus, SuppressionReason
from service.postal import normalise_postal_code
from service.subscribers import email_key, is_suppressed, normalise_email
from tests import factories

QUICK = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])

ADDRESSES = ["ana@example.org", "ANA@Example.org", " bo@example.org ", "=cmd|'/Ccalc'!A0@x.org",
             "'=quoted@example.org", "gone@example.org", "left@example.org",
             "jos\u00e9@ex\u00e4mple.org", "bad@", "@x.org", "a@b", "x" * 300 + "@example.org",
             "ana@example.org\u202e", ""]
HOSTILE = ["=cmd|'/C calc'!A0", "'=x", "''@y", "@SUM(1)", "-1", "+1", "\t=1", "\r", "\n",
           "\r\n", "\u202eevil", "\u200f", "\x00", "\x1b[31m", "\x7f", "\ufeff", '"', '""',
           ",", "'", "  ", "Ana", "O'Neil", "94110", "10001-1234", "SW1A 1AA", "es", "ES",
           "Spanish", "klingon", "unsubscribed", "confirmed", "CA", "ca", "x" * 1100,
           "y" * 101, "\U0001f600", "e\u0301"]
HEADERS = ["email", "E-mail Address", "Correo electr\u00f3nico", "first name", "Surname",
           "name", "zip", "Language", "state", "status", "subscribed_at", "notes",
           "=HYPERLINK(\"x\")", "'@mention", "", " ", "Member Since", "email", "<huge>"]
# "<huge>" stands for a cell longer than any cell may be (FIELD_LIMIT): examples stay
# short to print, and `build` writes the long cell.
HUGE = "h" * 70_000
PYTHON_FIELD_LIMIT = 128 * 1024  # the csv module's default

cell = st.one_of(st.sampled_from(HOSTILE), st.sampled_from(ADDRESSES), st.text(max_size=20))
header = st.lists(st.one_of(st.sampled_from(HEADERS), st.text(max_size=12)),
                  min_size=1, max_size=8)
# Headers that can name an attribute (no control or format characters): a file with any
# other header is refused whole, which `header` covers; the cells stay hostile.
sane_header = st.lists(st.one_of(st.sampled_from(HEADERS), st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs")), max_size=12)), min_size=1, max_size=8)
line_end = st.sampled_from(["\r\n", "\n", "\r"])


@dataclass(frozen=True)
class Recipe:
    """How to write one file (what Hypothesis shows for a failing example)."""

    names: list[str]
    body: list[list[str]]
    well_formed: bool  # csv.writer, or cells joined by hand (stray quotes, ragged rows)
    line_end: str
    encoding: str

    def text(self) -> str:
        lines = [[HUGE if c == "<huge>" else c for c in line] for line in [self.names, *self.body]]
        if self.well_formed:
            out = io.StringIO()
            csv.writer(out, lineterminator=self.line_end).writerows(lines)
            return out.getvalue()
        return self.line_end.join(",".join(line) for line in lines)

    def data(self) -> bytes:
        return self.text().encode(self.encoding, errors="replace")


@st.composite
def recipes(draw: st.DrawFn, encodings: tuple[str, ...] = (
        "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"),
            email_column: bool = False, names_from: st.SearchStrategy[list[str]] = header
            ) -> Recipe:
    names = draw(names_from)
    if email_column:  # most files of the importer's users have one
        names.insert(draw(st.integers(0, len(names))), draw(st.sampled_from(HEADERS[:3])))
    body = draw(st.lists(st.lists(cell, max_size=len(names) + 2), max_size=12))
    return Recipe(names, body, draw(st.booleans()), draw(line_end),
                  draw(st.sampled_from(encodings)))


def read(data: bytes) -> list[Row | Problem] | FileError:
    """What the CLI and the import job do with a file: scan it whole, then parse it.

    The csv module's field size limit is process-wide: start from Python's own, as a
    fresh process does.
    """
    csv.field_size_limit(PYTHON_FIELD_LIMIT)
    try:
        scan(io.BytesIO(data))
    except FileError as exc:
        return exc
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    return list(rows(text))


def assert_valid(row: Row) -> None:
    assert normalise_email(row.email) == row.email and row.key == email_key(row.email)
    for name in (row.first_name, row.last_name):
        assert clean_text(name, "name", NAME_MAX) == name
    assert len(row.postal_code) <= POSTAL_MAX
    assert normalise_postal_code(row.postal_code) == row.postal_code
    assert not CONTROL.search(row.postal_code)
    assert row.locale in ("", *LOCALES)
    assert row.state == "" or (len(row.state) == 2 and row.state.isascii()
                               and row.state.isalpha() and row.state.isupper())
    assert len(row.attributes) <= ATTRIBUTES_MAX
    for key, value in row.attributes.items():
        assert key.strip() and value and len(value) <= ATTRIBUTE_MAX
        assert clean_text(key, "key", 100) == key  # the attribute rules of staff edits
        assert clean_text(value, "value", ATTRIBUTE_MAX) == value


@QUICK
@given(recipes())
@example(Recipe(["email", "<huge>"], [["a@example.org", "x"]], True, "\r\n", "utf-8"))
@example(Recipe(["email", "notes"], [["a@example.org", "<huge>"]], True, "\r\n", "utf-8"))
def test_any_file_reads_as_rows_and_problems_or_is_refused_whole(recipe: Recipe) -> None:
    found = read(recipe.data())
    if isinstance(found, FileError):
        assert str(found).strip()
        return
    lines = [item.line for item in found]
    assert lines == sorted(lines) and all(line >= 2 for line in lines)
    for item in found:
        if isinstance(item, Row):
            assert_valid(item)
        else:
            assert isinstance(item, Problem) and item.reason.strip()
            assert len(item.email) <= 254


@QUICK
@given(st.text())
def test_a_quoted_formula_never_starts_a_cell_and_reads_back(value: str) -> None:
    quoted = quote_formula(value)
    assert not quoted.startswith(FORMULA_START)
    assert unquote_formula(quoted) == value


@QUICK
@given(st.lists(st.tuples(cell, cell), min_size=1, max_size=8))
def test_what_the_exporter_writes_the_importer_reads_as_it_was(pairs: list[tuple[str, str]]
                                                                 ) -> None:
    """Any first name and attribute, written by the export's writer, read back the same."""
    written = [["email", "first_name", "notes"],
               *[[f"p{i}@example.org", first, note] for i, (first, note) in enumerate(pairs)]]
    text = "".join(csv_blocks(written))
    for item, (first, note) in zip(rows(io.StringIO(text, newline="")), pairs, strict=True):
        if isinstance(item, Problem):  # a name the importer refuses, and says why
            assert item.reason.startswith(("first name", "notes"))
            continue
        assert item.first_name == " ".join(first.split())
        assert item.attributes.get("notes", "") == note.strip()


def stored_is_valid(suppressed: str, unsubscribed_id: int, list_id: int) -> None:
    session = db.session()
    for person in session.scalars(select(Subscriber)):
        assert normalise_email(person.email) == person.email
        assert person.email_key == email_key(person.email)
        for name in (person.first_name, person.last_name):
            assert clean_text(name, "name", NAME_MAX) == name
        assert normalise_postal_code(person.postal_code) == person.postal_code
        assert len(person.postal_code) <= POSTAL_MAX and person.locale in LOCALES
        assert isinstance(person.attributes, dict) and len(person.attributes) <= ATTRIBUTES_MAX
        assert all(isinstance(v, str) and 0 < len(v) <= ATTRIBUTE_MAX
                   for v in person.attributes.values())
    assert session.scalar(select(Subscriber).where(Subscriber.email_key == suppressed)) is None
    assert is_suppressed(session, suppressed)
    left = session.get(Subscriber, unsubscribed_id)
    assert left is not None
    assert {s.list_id: s.status for s in left.subscriptions}[list_id] == (
        SubscriptionStatus.unsubscribed)


def test_imports_of_hostile_files_store_nothing_invalid(
        app: Flask, run_jobs: Callable[..., None]) -> None:
    """The merge rules on a database: known, suppressed and unsubscribed addresses."""
    factories.subscriber("ana@example.org", lists={"newsletter": SubscriptionStatus.confirmed})
    left = factories.subscriber("left@example.org",
                                lists={"newsletter": SubscriptionStatus.unsubscribed})
    factories.suppression("gone@example.org", SuppressionReason.complaint)
    list_id = factories.list_id("newsletter")

    imported: list[int] = []

    @settings(max_examples=80, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(recipes(encodings=("utf-8",), email_column=True, names_from=sane_header))
    def import_one(recipe: Recipe) -> None:
        found = read(recipe.data())
        if isinstance(found, FileError):
            return
        imported.append(len(found))
        counts = run_import(db.session(), iter(found),
                            ImportOptions(list_id=list_id, confirmed=True, consent_note="t"))
        assert counts.rows == len(found)
        assert (counts.created + counts.updated + counts.skipped + counts.refused
                + counts.invalid) == counts.rows
        stored_is_valid("gone@example.org", left.id, list_id)

    import_one()
    assert len(imported) >= 10 and sum(imported) >= 50  # the examples did reach the database
