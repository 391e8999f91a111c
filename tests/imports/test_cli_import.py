"""`actionlist import`: real files through the real command, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv

from sqlalchemy import select

from service import db
from service.models import (
    ConsentRecord,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests.factories import list_id
from tests.queries import count, snapshot
from tests.support import run_cli

from .csv_files import people, write_csv

NOTE = "Petition signers 2025 who ticked 'keep me informed'"


def test_bom_crlf_quoted_commas_and_attributes(app, tmp_path):
    path = write_csv(tmp_path / "members.csv", [
        ["Ana@Example.org", "Ana María", "García, Jr.", "94110", "Español", "2019"],
        ["bob@example.net", "Bob", '"The Builder"', "10001-1234", "", ""],
        ["  carla@EXAMPLE.com ", "", "", "", "en-US", "2021"],
    ], bom=True, newline="\r\n")
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE)
    assert result.exit_code == 0, result.output
    assert "3 rows: 3 created, 0 updated, 0 skipped, 0 refused, 0 invalid" in result.output

    session = db.session()
    ana = session.scalars(select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert (ana.email, ana.first_name, ana.last_name, ana.postal_code, ana.state, ana.locale) == (
        "Ana@example.org", "Ana María", "García, Jr.", "94110", "CA", "es")
    assert ana.attributes == {"Member Since": "2019"}
    bob = session.scalars(select(Subscriber).where(Subscriber.email_key == "bob@example.net")).one()
    assert (bob.last_name, bob.state, bob.locale, bob.attributes) == (
        '"The Builder"', "NY", "en", {})
    carla = session.scalars(
        select(Subscriber).where(Subscriber.email_key == "carla@example.com")).one()
    assert carla.email == "carla@example.com"
    subs = session.scalars(select(Subscription)).all()
    assert {(s.list_id, s.status) for s in subs} == {
        (list_id("newsletter"), SubscriptionStatus.confirmed)}
    assert all(s.confirmed_at is not None for s in subs)
    records = session.scalars(select(ConsentRecord)).all()
    assert len(records) == 3
    assert {(r.action, r.actor, r.endpoint, r.note, r.source, r.list_id) for r in records} == {
        ("import", "cli", "import", NOTE, "members.csv", list_id("newsletter"))}


def test_duplicates_invalid_rows_report_and_second_run(app, tmp_path):
    rows = people(300, invalid_every=100)  # 3 broken addresses: 1 %
    rows.insert(10, ["PERSON5@Example5.ORG", "Someone", "Else", "", "", "extra"])  # dup
    rows.insert(20, ["ana@example.org", "", "", "", "", ""])
    rows.insert(40, ["Ana@EXAMPLE.org", "Ana", "", "60601", "es", ""])  # dup fills blanks
    rows.insert(50, ["bad@", "Bad", "", "", "", ""])
    rows.insert(60, ["ok@example.org", "Line\u0007Break", "", "", "", ""])
    rows.insert(70, ["lang@example.org", "", "", "", "fr", ""])
    path = write_csv(tmp_path / "list.csv", rows)
    report = tmp_path / "problems.csv"
    result = run_cli(app, "import", str(path), "--list", "action-alerts", "--confirmed",
                     "--consent-note", NOTE, "--report", str(report), "--chunk-size", "50")
    assert result.exit_code == 0, result.output
    # 306 rows: 297 + ana valid and new, 2 duplicates, 3 + 3 invalid
    assert "306 rows: 298 created, 0 updated, 2 skipped, 0 refused, 6 invalid" in result.output
    assert count(Subscriber) == 298
    ana = db.session().scalars(
        select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert (ana.email, ana.first_name, ana.postal_code, ana.state, ana.locale) == (
        "ana@example.org", "Ana", "60601", "IL", "es")
    person5 = db.session().scalars(
        select(Subscriber).where(Subscriber.email_key == "person5@example5.org")).one()
    assert person5.first_name == "First5"  # first row wins; the duplicate adds nothing

    with report.open(newline="", encoding="utf-8") as f:
        problems = list(csv.DictReader(f))
    by_line = {int(p["line"]): p for p in problems}
    assert len(problems) == 6
    # line numbers are the file's: header = 1, rows[i] = i + 2
    assert by_line[rows.index(["bad@", "Bad", "", "", "", ""]) + 2]["reason"].startswith(
        "invalid email address")
    assert "control character" in by_line[62]["reason"]
    assert "not one of en, es" in by_line[72]["reason"]
    broken = [i + 2 for i, r in enumerate(rows) if "@" not in r[0]]
    assert len(broken) == 3 and set(broken) <= set(by_line)

    before = snapshot()
    again = run_cli(app, "import", str(path), "--list", "action-alerts", "--confirmed",
                    "--consent-note", NOTE, "--report", str(report))
    assert again.exit_code == 0, again.output
    assert "306 rows: 0 created, 0 updated, 300 skipped, 0 refused, 6 invalid" in again.output
    assert snapshot() == before
    with report.open(newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_latin1_file_is_refused_and_nothing_imported(app, tmp_path):
    rows = people(50) + [["jose@example.org", "José", "Núñez", "", "es", ""]]
    path = write_csv(tmp_path / "latin1.csv", rows, encoding="latin-1")
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE)
    assert result.exit_code == 1
    assert "not UTF-8: line 52" in result.output
    assert "CSV UTF-8" in result.output and "Nothing was imported" in result.output
    assert count(Subscriber) == 0 and count(ConsentRecord) == 0


def test_file_without_email_column(app, tmp_path):
    path = write_csv(tmp_path / "x.csv", [["a", "b"]], header=["name", "phone"])
    result = run_cli(app, "import", str(path), "--list", "newsletter")
    assert result.exit_code == 1
    assert "No column holds the email address" in result.output


def test_confirmed_needs_a_note_and_the_list_must_exist(app, tmp_path):
    path = write_csv(tmp_path / "x.csv", people(2))
    assert "--consent-note" in run_cli(app, "import", str(path), "--list", "newsletter",
                                       "--confirmed").output
    unknown = run_cli(app, "import", str(path), "--list", "nope")
    assert unknown.exit_code == 1 and "No list 'nope'" in unknown.output


def test_attribute_cells_and_headers_follow_the_attribute_rules(app, tmp_path):
    """What staff cannot set through the API cannot arrive by import either: a cell with a
    line break or a direction override is refused (its row reported, nothing stored), and
    a header holding one refuses the file before anything is read."""
    rows = [
        ["ok@example.org", "Ok", "", "", "", "2019  and   on"],
        ["newline@example.org", "New", "", "", "", "line one\nline two"],
        ["bidi@example.org", "Bidi", "", "", "", "\u202egnp.exe"],
        ["long@example.org", "Long", "", "", "", "x" * 1001],
    ]
    path = write_csv(tmp_path / "attrs.csv", rows)
    report = tmp_path / "problems.csv"
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE, "--report", str(report))
    assert result.exit_code == 0, result.output
    assert "4 rows: 1 created, 0 updated, 0 skipped, 0 refused, 3 invalid" in result.output
    ok = db.session().scalars(select(Subscriber)).one()
    assert ok.email == "ok@example.org" and ok.attributes == {"Member Since": "2019 and on"}
    with report.open(newline="", encoding="utf-8") as f:
        reasons = {p["email"]: p["reason"] for p in csv.DictReader(f)}
    assert reasons["newline@example.org"] == (
        "Member Since contains a line break or a control character")
    assert reasons["bidi@example.org"] == (
        "Member Since contains a character that changes the direction of text")
    assert reasons["long@example.org"] == "Member Since is longer than 1000 characters"

    header = ["email", "first_name", "Chapter\u202e"]
    bad = write_csv(tmp_path / "header.csv", [["a@example.org", "A", "North"]], header=header)
    refused = run_cli(app, "import", str(bad), "--list", "newsletter", "--confirmed",
                      "--consent-note", NOTE)
    assert refused.exit_code != 0
    assert ("column 3's header contains a character that changes the direction of text"
            in refused.output)
    assert count(Subscriber) == 1
