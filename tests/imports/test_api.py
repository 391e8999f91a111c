"""POST /api/v1/imports and GET /api/v1/imports/<id>: upload, job, progress, report."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from service import db
from service.jobs.imports import run_import
from service.models import (
    ConsentRecord,
    Import,
    ImportPart,
    ImportStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests.queries import count

from .csv_files import HEADER, people

NOTE = "Coalition partner's list, double opt-in there"


def csv_bytes(rows, *, encoding="utf-8", bom=True) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode(encoding)


def upload(client, headers, data: bytes, **fields):
    form = {"file": (io.BytesIO(data), "partners.csv"), **fields}
    return client.post("/api/v1/imports", data=form, headers=headers,
                       content_type="multipart/form-data")


def test_upload_runs_as_a_job_with_progress_and_report(app, client, run_jobs, api_token):
    rows = people(250, invalid_every=50)
    response = upload(client, api_token("campaigner"), csv_bytes(rows), list="newsletter",
                      confirmed="true", consent_note=NOTE)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "queued" and body["rows"] == {"processed": 0, "total": 250}
    assert body["list"] == "newsletter" and body["filename"] == "partners.csv"

    run_jobs()
    viewer = api_token("viewer")
    done = client.get(f"/api/v1/imports/{body['id']}", headers=viewer).get_json()
    assert done["status"] == "done", done
    assert done["rows"] == {"processed": 250, "total": 250} and done["progress"] == 1.0
    assert done["counts"] == {"created": 245, "updated": 0, "skipped": 0, "refused": 0,
                              "invalid": 5}
    assert done["started_at"] and done["finished_at"]
    assert count(Subscriber) == 245
    record = db.session().scalars(select(ConsentRecord).limit(1)).one()
    assert (record.action, record.note, record.actor) == ("import", NOTE, "token:test-campaigner")
    assert count(ImportPart) == 0  # the upload is not kept once imported

    report = client.get(done["report_url"], headers=viewer)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    problems = list(csv.DictReader(io.StringIO(report.get_data(as_text=True))))
    assert [int(p["line"]) for p in problems] == [51, 101, 151, 201, 251]
    assert all(p["reason"].startswith("invalid email address") for p in problems)
    listed = client.get("/api/v1/imports", headers=viewer).get_json()
    assert [i["id"] for i in listed] == [body["id"]]


def test_pending_import_over_the_api(app, client, run_jobs, api_token, sink):
    response = upload(client, api_token("campaigner"), csv_bytes(people(3)), list="newsletter")
    assert response.status_code == 202
    run_jobs()
    done = client.get(f"/api/v1/imports/{response.get_json()['id']}",
                      headers=api_token("viewer")).get_json()
    assert done["status"] == "done" and done["mails_queued"] == 3
    assert len(sink.messages()) == 3
    assert set(db.session().scalars(select(Subscription.status))) == {
        SubscriptionStatus.pending}


def test_refused_uploads(app, client, api_token):
    campaigner = api_token("campaigner")
    latin1 = upload(client, campaigner, csv_bytes(
        [["jose@example.org", "José", "", "", "", ""]], encoding="latin-1", bom=False),
        list="newsletter")
    assert latin1.status_code == 422
    assert "not UTF-8: line 2" in latin1.get_json()["errors"]["file"][0]
    no_note = upload(client, campaigner, csv_bytes(people(1)), list="newsletter",
                     confirmed="true")
    assert "consent_note" in no_note.get_json()["errors"]
    unknown = upload(client, campaigner, csv_bytes(people(1)), list="nope")
    assert unknown.status_code == 422 and "list" in unknown.get_json()["errors"]
    no_file = client.post("/api/v1/imports", data={"list": "newsletter"}, headers=campaigner)
    assert no_file.status_code == 422 and "file" in no_file.get_json()["errors"]
    assert count(Import) == 0 and count(ImportPart) == 0

    assert upload(client, api_token("editor"), csv_bytes(people(1)),
                  list="newsletter").status_code == 403
    assert upload(client, {}, csv_bytes(people(1)), list="newsletter").status_code == 401
    assert client.get("/api/v1/imports/999", headers=api_token("viewer")).status_code == 404


def test_job_twice_does_nothing_twice(app, client, run_jobs, api_token):
    response = upload(client, api_token("campaigner"), csv_bytes(people(20)),
                      list="action-alerts", confirmed="1", consent_note=NOTE)
    import_id = response.get_json()["id"]
    run_jobs()
    assert run_import(import_id).startswith("not claimable")  # RQ ran it once more
    row = db.session().get(Import, import_id)
    db.session().refresh(row)
    assert row.status == ImportStatus.done and row.rows_created == 20
    assert count(ConsentRecord) == 20
