"""The admin's import and export pages: upload, choose columns, progress, report, export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from sqlalchemy import func, select

from service import db
from service.models import (
    ConsentRecord,
    Import,
    ImportProblem,
    ImportStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests import factories

from .signin import Staff

FILE = (
    b"Correo,Nombre,Mail,Notes,ZIP\r\n"
    b"ana@example.org,Ana,ana.alt@example.org,met at lobby day,94110\r\n"
    b"BOB@Example.org,\"Bob, Jr.\",,,10001\r\n"
    b"not-an-address,Zed,,,\r\n"
    b"bob@example.org,Robert,,,\r\n"
)


def upload(staff: Staff, data: bytes, **fields: object):  # type: ignore[no-untyped-def]
    return staff.post("/admin/imports", {"file": (io.BytesIO(data), "members.csv"), **fields},
                      content_type="multipart/form-data")


def mapping(*choices: str) -> dict[str, str]:
    """The import form's column choices, one per column of the file, as it posts them."""
    return {"columns": str(len(choices)), **{f"column_{i}": c for i, c in enumerate(choices)}}


def test_preview_guesses_columns_and_refuses_latin1(staff: Callable[[str], Staff]) -> None:
    campaigner = staff("campaigner")
    found = campaigner.post("/admin/imports/preview", {"file": (io.BytesIO(FILE), "head.csv")},
                            content_type="multipart/form-data")
    assert found.status_code == 200, found.text
    assert found.json["header"] == ["Correo", "Nombre", "Mail", "Notes", "ZIP"]
    assert found.json["guesses"] == ["email", "first_name", "email", "attribute", "postal_code"]
    assert found.json["sample"][1] == ["BOB@Example.org", "Bob, Jr.", "", "", "10001"]
    latin1 = campaigner.post(
        "/admin/imports/preview",
        {"file": (io.BytesIO("email,nombre\r\njose@example.org,José\r\n".encode("latin-1")),
                  "h.csv")},
        content_type="multipart/form-data")
    # The first 64 KB may stop mid-character, so the preview reads leniently; the real
    # upload below is checked whole.
    assert latin1.status_code == 200
    refused = upload(campaigner, "email,nombre\r\njose@example.org,José\r\n".encode("latin-1"),
                     list="newsletter", confirmed="on", consent_note="paper forms")
    assert refused.status_code == 422 and "UTF-8" in refused.text
    assert db.session().scalar(select(func.count()).select_from(Import)) == 0


def test_upload_with_chosen_columns_runs_and_reports(
    staff: Callable[[str], Staff], run_jobs: Callable[..., None]
) -> None:
    campaigner = staff("campaigner")
    missing_note = upload(campaigner, FILE, list="newsletter", confirmed="on")
    assert missing_note.status_code == 422 and "consent" in missing_note.text
    # "Mail" would be read as a second email column: keep it as an attribute; drop "Notes".
    started = upload(campaigner, FILE, list="newsletter", confirmed="on",
                     consent_note="Paper sign-up sheets, lobby day 2026",
                     **mapping("email", "first_name", "attribute", "ignore", "postal_code"))
    assert started.status_code == 303, started.text
    row = db.session().scalars(select(Import)).one()
    assert started.location.endswith(f"/admin/imports/{row.id}")
    assert campaigner.get(started.location).status_code == 200

    run_jobs()
    progress = campaigner.get(f"/admin/imports/{row.id}/progress").json
    assert progress["status"] == "done" and progress["percent"] == 100.0
    assert progress["counts"]["created"] == 2 and progress["counts"]["invalid"] == 1
    page = campaigner.get(f"/admin/imports/{row.id}").text
    assert 'aria-valuenow="100"' in page and "Lobby day" not in page

    session = db.session()
    session.expire_all()
    ana = session.scalars(select(Subscriber).where(Subscriber.email_key == "ana@example.org")).one()
    assert ana.first_name == "Ana" and ana.state == "CA"
    assert ana.attributes == {"Mail (attribute)": "ana.alt@example.org"}  # Notes ignored
    bob = session.scalars(select(Subscriber).where(Subscriber.email_key == "bob@example.org")).one()
    assert bob.first_name == "Bob, Jr."  # the first row of a duplicate wins
    statuses = session.scalars(select(Subscription.status)).all()
    assert sorted(s.value for s in statuses) == ["confirmed", "confirmed"]
    note = session.scalars(select(ConsentRecord.note).where(ConsentRecord.subscriber_id == ana.id)).all()
    assert "Paper sign-up sheets, lobby day 2026" in note

    report = campaigner.get(f"/admin/imports/{row.id}/problems.csv")
    lines = list(csv.reader(io.StringIO(report.text)))
    assert lines[0] == ["line", "email", "reason"]
    assert [r[:2] for r in lines[1:]] == [["4", "not-an-address"]]

    listing = campaigner.get("/admin/imports").text
    assert "members.csv" in listing and "done" in listing


def test_a_mapping_without_an_email_column_is_refused(staff: Callable[[str], Staff]) -> None:
    campaigner = staff("campaigner")
    response = upload(campaigner, FILE, list="newsletter",
                      **mapping("ignore", "first_name", "ignore", "ignore", "postal_code"))
    assert response.status_code == 422 and "email address" in response.text
    assert db.session().scalar(select(func.count()).select_from(Import)) == 0


def test_export_streams_what_was_imported(
    staff: Callable[[str], Staff], run_jobs: Callable[..., None]
) -> None:
    campaigner = staff("campaigner")
    # As it is, the file has two address columns ("Correo" and "Mail"): refused, clearly.
    ambiguous = upload(campaigner, FILE, list="action-alerts", confirmed="on",
                       consent_note="vouched")
    assert ambiguous.status_code == 422 and "Two columns mean the same thing" in ambiguous.text
    assert upload(campaigner, FILE, list="action-alerts", confirmed="on", consent_note="vouched",
                  **mapping("email", "first_name", "ignore", "ignore", "postal_code")
                  ).status_code == 303
    run_jobs()
    exported = campaigner.get("/admin/export.csv?list=action-alerts&status=confirmed")
    assert exported.status_code == 200
    assert exported.headers["Content-Disposition"] == 'attachment; filename="action-alerts.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["email"] for r in rows) == ["BOB@example.org", "ana@example.org"]
    assert {r["status"] for r in rows} == {"confirmed"}
    assert campaigner.get("/admin/export.csv?list=nope").status_code == 404
    assert campaigner.get("/admin/export.csv?list=newsletter&status=bogus").status_code == 400


def test_viewer_reads_and_exports_but_cannot_import(staff: Callable[[str], Staff]) -> None:
    viewer = staff("viewer")
    page = viewer.get("/admin/imports")
    assert page.status_code == 200 and "Start the import" not in page.text
    assert "Download CSV" in page.text  # viewers read everything, as in the API
    assert upload(viewer, FILE, list="newsletter").status_code == 403
    assert viewer.post("/admin/imports/preview", {"file": (io.BytesIO(FILE), "h.csv")},
                       content_type="multipart/form-data").status_code == 403
    assert viewer.get("/admin/export.csv?list=newsletter").status_code == 200
    assert db.session().scalar(select(func.count()).select_from(Import)) == 0


def test_a_note_without_confirmed_is_refused_as_in_the_api(staff: Callable[[str], Staff]) -> None:
    response = upload(staff("campaigner"), FILE, list="newsletter", consent_note="vouched")
    assert response.status_code == 422 and "goes with a confirmed import" in response.text
    assert db.session().scalar(select(func.count()).select_from(Import)) == 0


def test_admin_csv_downloads_quote_formula_cells(staff: Callable[[str], Staff]) -> None:
    """The export and the problems report: no cell starts as a spreadsheet formula."""
    factories.subscriber("=cmd|'/Ccalc'!A0@example.org", first_name="@SUM(1)",
                         lists={"newsletter": SubscriptionStatus.confirmed},
                         attributes={"=x": "-2+3", "tab": "\t=1"})
    record = factories.import_record(ImportStatus.done)
    db.session().add(ImportProblem(import_id=record.id, line=2, email="=HYPERLINK(\"x\")",
                                   reason="invalid email address"))
    db.session().commit()
    viewer = staff("viewer")
    exported = viewer.get("/admin/export.csv?list=newsletter").text
    problems = viewer.get(f"/admin/imports/{record.id}/problems.csv").text
    for text in (exported, problems):
        for line in csv.reader(io.StringIO(text, newline="")):
            assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in line)
    header, row = csv.reader(io.StringIO(exported, newline=""))
    assert dict(zip(header, row, strict=True)).items() >= {
        "email": "'=cmd|'/Ccalc'!A0@example.org", "first_name": "'@SUM(1)", "'=x": "'-2+3",
        "tab": "'\t=1"}.items()
    assert list(csv.reader(io.StringIO(problems, newline="")))[1] == [
        "2", "'=HYPERLINK(\"x\")", "invalid email address"]
