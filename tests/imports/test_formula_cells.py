"""Cells a spreadsheet would run as a formula: quoted in every CSV we write, and read back.

A value starting with `=`, `+`, `-`, `@`, a tab or a carriage return leaves as `'` plus
the value (so Excel and LibreOffice show text instead of running it), and the importer
takes the quote off again, so an export imports back exactly as it was.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from service import db
from service.models import ConfirmationMail, ConsentRecord, Subscriber, Subscription
from tests import factories
from tests.support import run_cli

NOTE = "Members' list, consent at membership"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# The file a hostile member list could hold: addresses, names and attributes (and column
# names) that a spreadsheet would evaluate, and values that already start with a quote.
HEADER = ["email", "first_name", "last_name", "postal_code", "=HYPERLINK(\"x\")", "@mention",
          "-minus", "notes"]
ROWS = [
    ["=cmd|'/Ccalc'!A0@example.org", '=HYPERLINK("http://evil.example","click")',
     "@SUM(1+1)", "", "=1+1", "@x", "-5", "'=kept as written"],
    ["+1@example.org", "+44 20 7946 0000", "-2+3", "94110", "''=quoted twice",
     "'''@thrice", "'plain quote", "x"],
    ["-x@example.org", "'", "''", "", "=cmd|' /C calc'!A0", "@", "-", "=2"],
    ["plain@example.org", "Ann", "O'Neil", "10001", "", "", "", "'quote"],
]


def write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path


def import_file(app: Flask, path: Path) -> str:
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE)
    assert result.exit_code == 0, result.output
    return str(result.output)


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def people() -> list[tuple[object, ...]]:
    """Everything an import stores about a person, in a comparable form."""
    rows = db.session().execute(
        select(Subscriber.email, Subscriber.first_name, Subscriber.last_name,
               Subscriber.postal_code, Subscriber.state, Subscriber.attributes)
    )
    return sorted((r.email, r.first_name, r.last_name, r.postal_code, r.state,
                   sorted(r.attributes.items())) for r in rows)


def wipe() -> None:
    session = db.session()
    for table in (ConsentRecord, ConfirmationMail, Subscription, Subscriber):
        session.execute(delete(table))
    session.commit()


def assert_inert(text: str) -> None:
    for line in cells(text):
        for cell in line:
            assert not cell.startswith(TRIGGERS), (cell, line)


def test_export_quotes_formulas_and_imports_back_losslessly(app: Flask, tmp_path: Path) -> None:
    import_file(app, write(tmp_path / "hostile.csv", ROWS))
    stored = people()
    by_email = {row[0]: row for row in stored}
    assert by_email["=cmd|'/Ccalc'!A0@example.org"][1] == '=HYPERLINK("http://evil.example",' \
                                                           '"click")'
    assert dict(by_email["=cmd|'/Ccalc'!A0@example.org"][5])["=HYPERLINK(\"x\")"] == "=1+1"
    # a spreadsheet's quote before a formula start is not part of the value
    assert dict(by_email["=cmd|'/Ccalc'!A0@example.org"][5])["notes"] == "=kept as written"
    assert dict(by_email["+1@example.org"][5])["=HYPERLINK(\"x\")"] == "'=quoted twice"
    assert dict(by_email["+1@example.org"][5])["@mention"] == "''@thrice"

    exported = run_cli(app, "export", "--list", "newsletter").stdout
    assert_inert(exported)
    header, *rows = cells(exported)
    assert "'=HYPERLINK(\"x\")" in header and "'@mention" in header and "'-minus" in header
    first = next(r for r in rows if r[0] == "'=cmd|'/Ccalc'!A0@example.org")
    assert first[1:3] == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'@SUM(1+1)"]
    second = next(r for r in rows if r[0] == "'+1@example.org")
    # a value already quoted before a formula character gets one more quote; others stay
    assert {"''=quoted twice", "'''@thrice", "'plain quote"} <= set(second)
    assert next(r for r in rows if r[0] == "plain@example.org")[2] == "O'Neil"

    wipe()
    import_file(app, write(tmp_path / "export.csv", rows, header))
    assert people() == stored
    again = run_cli(app, "export", "--list", "newsletter").stdout
    assert [r[:6] + r[10:] for r in cells(again)] == [r[:6] + r[10:] for r in cells(exported)]


def test_values_stored_by_other_means_leave_inert(app: Flask, client: FlaskClient,
                                                  api_token) -> None:  # type: ignore[no-untyped-def]
    """Tabs and carriage returns (the API keeps attribute values as given) are quoted too."""
    factories.subscriber("tab@example.org", first_name="-1", lists={"newsletter": "confirmed"},
                         attributes={"t": "\t=1+1", "r": "\r@x", "n": -3, "@k": "v"})
    for text in (run_cli(app, "export", "--list", "newsletter").stdout,
                 client.get("/api/v1/subscribers/export.csv?list=newsletter",
                            headers=api_token("viewer")).get_data(as_text=True)):
        assert_inert(text)
        header, row = cells(text)
        values = dict(zip(header, row, strict=True))
        assert (values["first_name"], values["t"], values["r"], values["n"], values["'@k"]) == (
            "'-1", "'\t=1+1", "'\r@x", "'-3", "v")


def test_import_reports_quote_the_addresses_as_given(app: Flask, client: FlaskClient,
                                                     api_token, run_jobs,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    bad = [["=cmd|'/C calc'!A0@example.org", "x", "", "", "", "", "", ""],
           ["@SUM(1)", "", "", "", "", "", "", ""],
           ["-bad", "", "", "", "", "", "", ""]]
    path = write(tmp_path / "bad.csv", bad)
    import_file(app, path)
    report = (tmp_path / "bad.report.csv").read_text(encoding="utf-8")
    assert_inert(report)
    assert [r[1] for r in cells(report)[1:]] == ["'=cmd|'/C calc'!A0@example.org", "'@SUM(1)",
                                                 "'-bad"]

    started = client.post("/api/v1/imports", headers=api_token("campaigner"),
                          data={"list": "newsletter", "file": (path.open("rb"), "bad.csv")},
                          content_type="multipart/form-data")
    assert started.status_code == 202, started.get_data(as_text=True)
    run_jobs()
    text = client.get(started.json["report_url"],
                      headers=api_token("viewer")).get_data(as_text=True)
    assert_inert(text)
    assert len(cells(text)) == 4
