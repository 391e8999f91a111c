"""The one text cleaner: bidi controls (which make `moc.evil` read as `evil.com`, or turn a
name around in a mail) are refused with a clear message wherever people and staff type
names: signup, the preference centre, staff edits and the CSV import."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import select

from service import db
from service.fields import FieldError, Refusal, clean_text
from service.models import Role, Subscriber, SubscriptionStatus
from service.tokens import preferences_url
from tests import factories
from tests.admin.signin import log_in
from tests.imports.csv_files import write_csv
from tests.support import run_cli

# Every Bidi_Control character of Unicode: ALM, LRM, RLM, LRE..RLO, LRI..PDI.
BIDI = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
        "\u2066", "\u2067", "\u2068", "\u2069"]
MESSAGE = "Must not contain characters that change the direction of text."


@pytest.mark.parametrize("char", BIDI)
def test_clean_text_refuses_bidi_controls(char):
    with pytest.raises(FieldError) as refused:
        clean_text(f"Ana{char}lexa", "first_name", 100)
    assert refused.value.refusal is Refusal.bidi and refused.value.message == MESSAGE


def test_right_to_left_names_are_welcome():
    for name in ["محمد", "דוד", "Zoë Ñandú", "李小龙", "O'Brien-Smith"]:
        assert clean_text(name, "first_name", 100) == name


def test_signup(client):
    for route in ("form", "json"):
        body = {"email": f"{route}@example.org", "first_name": "Eve\u202egro.live"}
        if route == "form":
            answer = client.post("/subscribe", data={**body, "lists": "newsletter"})
            assert answer.status_code == 422 and MESSAGE in answer.text
        else:
            answer = client.post("/api/v1/subscriptions", json={**body, "lists": ["newsletter"]})
            assert answer.status_code == 422
            assert answer.json["errors"]["first_name"] == [MESSAGE]
    assert db.session().scalars(select(Subscriber)).all() == []


def test_preference_centre(client):
    person = factories.subscriber("p@example.org", first_name="Pat",
                                  lists={"newsletter": SubscriptionStatus.confirmed})
    path = preferences_url(person.id)[len("http://localhost"):]
    answer = client.post(path, data={"first_name": "Pat\u2067", "lists": "newsletter",
                                      "lang": "en"})
    assert answer.status_code == 422 and MESSAGE in answer.text
    db.session().expire_all()
    assert db.session().get(Subscriber, person.id).first_name == "Pat"


def test_staff_edit(app):
    person = factories.subscriber("p@example.org", last_name="Lee")
    factories.user("ed@example.org", Role.editor)
    client = app.test_client()
    token = log_in(client, "ed@example.org")
    answer = client.post(f"/admin/subscribers/{person.id}/edit", data={
        "csrf_token": token, "last_name": "Lee\u202d", "locale": "en"})
    assert answer.status_code == 422 and MESSAGE in answer.text
    db.session().expire_all()
    assert db.session().get(Subscriber, person.id).last_name == "Lee"


def test_import(app, tmp_path):
    path = write_csv(tmp_path / "in.csv", [["a@example.org", "Al\u202eix", "", "", "", ""],
                                           ["b@example.org", "Bo", "", "", "", ""]])
    report = tmp_path / "problems.csv"
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert "1 invalid" in result.output
    assert [s.email for s in db.session().scalars(select(Subscriber))] == ["b@example.org"]
    with report.open(newline="", encoding="utf-8") as f:
        [problem] = list(csv.DictReader(f))
    assert problem["line"] == "2" and problem["reason"] == (
        "first name contains a character that changes the direction of text")
