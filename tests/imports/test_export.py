"""`actionlist export` and GET /api/v1/subscribers/export.csv: what was imported comes out."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select, update

from service import db
from service.models import Subscriber, Subscription, SubscriptionStatus
from tests.support import run_cli

from .csv_files import people, write_csv

NOTE = "Members' list, consent at membership"
HEADER = ["email", "first_name", "last_name", "postal_code", "state", "language", "status",
          "subscribed_at", "confirmed_at", "unsubscribed_at"]


def imported(app, tmp_path, n=120):
    rows = people(n)
    # Quotes and commas in every kind of cell (a line break is refused in an attribute as
    # in a name: tests/imports/test_cli_import.py).
    rows.append(["quote@example.org", 'Ann "Q", Jr.', "O'Neil, Sr.", "", "en", 'since "2019", again'])
    path = write_csv(tmp_path / "in.csv", rows)
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", NOTE)
    assert result.exit_code == 0, result.output
    return rows


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_cli_export_equals_what_was_imported(app, tmp_path):
    rows = imported(app, tmp_path)
    result = run_cli(app, "export", "--list", "newsletter")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0].split(",") == HEADER + ["Member Since"]
    exported = parse(out)
    # (in subscriber id order: inside a chunk, new addresses are inserted in key order)
    assert sorted((r["email"], r["first_name"], r["last_name"], r["postal_code"],
                   r["language"], r["Member Since"]) for r in exported) == sorted(
        (r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows)
    assert {r["status"] for r in exported} == {"confirmed"}
    by_email = {r["email"]: r for r in exported}
    assert by_email["person0@example0.org"]["state"] == "CA"
    assert by_email["quote@example.org"]["Member Since"] == 'since "2019", again'

    # an export imports back as it is: nothing changes, nothing becomes an attribute
    again = tmp_path / "export.csv"
    again.write_text(out, encoding="utf-8", newline="")
    back = run_cli(app, "import", str(again), "--list", "newsletter", "--confirmed",
                   "--consent-note", NOTE)
    assert f"{len(rows)} rows: 0 created, 0 updated, {len(rows)} skipped" in back.output


def test_status_filter_and_unsubscribed_rows_never_come_back(app, tmp_path):
    imported(app, tmp_path, n=10)
    session = db.session()
    first_two = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id).limit(2)))
    session.execute(update(Subscription).where(Subscription.subscriber_id.in_(first_two))
                    .values(status=SubscriptionStatus.unsubscribed))
    session.commit()
    confirmed = parse(run_cli(app, "export", "--list", "newsletter", "--status",
                              "confirmed").stdout)
    gone = parse(run_cli(app, "export", "--list", "newsletter", "--status",
                         "unsubscribed").stdout)
    both = parse(run_cli(app, "export", "--list", "newsletter", "--status", "confirmed",
                         "--status", "unsubscribed").stdout)
    assert (len(confirmed), len(gone), len(both)) == (9, 2, 11)
    assert sorted(r["email"] for r in gone) == ["person0@example0.org", "person1@example1.org"]

    # imported elsewhere (a fresh list here), rows exported as unsubscribed stay out
    path = tmp_path / "gone.csv"
    path.write_text(run_cli(app, "export", "--list", "newsletter").stdout, encoding="utf-8",
                    newline="")
    result = run_cli(app, "import", str(path), "--list", "action-alerts", "--confirmed",
                     "--consent-note", NOTE)
    assert "11 rows: 0 created, 9 updated, 0 skipped, 2 refused" in result.output


def test_api_export_streams_the_same_csv(app, client, api_token, tmp_path):
    imported(app, tmp_path, n=30)
    cli = run_cli(app, "export", "--list", "newsletter").stdout_bytes.decode()  # CRLF kept
    headers = api_token("viewer")
    response = client.get("/api/v1/subscribers/export.csv?list=newsletter", headers=headers)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="newsletter-')
    assert response.get_data(as_text=True) == cli
    filtered = client.get("/api/v1/subscribers/export.csv?list=newsletter&status=pending",
                          headers=headers)
    assert len(parse(filtered.get_data(as_text=True))) == 0

    # the route does not shadow /subscribers/<id>, and is checked like the other GETs
    sid = db.session().scalars(select(Subscriber.id).limit(1)).one()
    assert client.get(f"/api/v1/subscribers/{sid}", headers=headers).status_code == 200
    assert client.get("/api/v1/subscribers/export.csv?list=newsletter").status_code == 401
    assert client.get("/api/v1/subscribers/export.csv?list=nope",
                      headers=headers).status_code == 422
    assert client.get("/api/v1/subscribers/export.csv?list=newsletter&status=gone",
                      headers=headers).status_code == 422
