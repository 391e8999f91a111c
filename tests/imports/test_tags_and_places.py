"""An import stores each row's place (state, county, time zone) exactly as `place_for`
gives it, on both databases (PostgreSQL writes new people in one statement, SQLite row by
row), and a `tags` column adds tags, never removing one."""

from __future__ import annotations

from sqlalchemy import select

from service import db
from service.models import Subscriber, SubscriberTag
from service.postal import place_for
from tests.factories import subscriber
from tests.support import run_cli

from .csv_files import write_csv

HEADER = ["email", "first_name", "zip", "state", "tags", "Congressional District"]
ZIPS = ["11201", "11201-2345", "112012345", "94110", "60614", "99634", "09001", "00000",
        "SW1A 1AA", "", "96799", "00601", "20500"]


def tags_by_email() -> dict[str, list[str]]:
    session = db.session()
    session.expire_all()
    return {s.email: sorted(t.tag for t in s.tag_rows)
            for s in session.scalars(select(Subscriber))}


def test_places_of_new_and_known_people_are_those_of_place_for(app, tmp_path):
    known = subscriber("known@example.org", first_name="Kim")  # no postal code yet
    rows = [[f"p{i}@example.org", "", code, "", "", ""] for i, code in enumerate(ZIPS)]
    rows.append(["known@example.org", "", "94110", "", "", ""])
    rows.append(["stated@example.org", "", "SW1A 1AA", "tx", "", ""])
    path = write_csv(tmp_path / "in.csv", rows, header=HEADER)
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", "test")
    assert result.exit_code == 0, result.output
    session = db.session()
    session.expire_all()
    stored = {s.email: s for s in session.scalars(select(Subscriber))}
    for i, code in enumerate(ZIPS):
        place = place_for(code)
        row = stored[f"p{i}@example.org"]
        assert (row.state, row.county, row.timezone) == (
            place.state, place.county, place.timezone), code
    assert stored["p0@example.org"].county == "Kings County"
    again = stored["known@example.org"]
    assert again.id == known.id and again.first_name == "Kim"
    assert (again.postal_code, again.state, again.county, again.timezone) == (
        "94110", "CA", "San Francisco County", "America/Los_Angeles")
    # A file's state column still counts where the postal code says nothing.
    assert (stored["stated@example.org"].state, stored["stated@example.org"].county) == (
        "TX", "")


def test_a_tags_column_adds_tags_and_never_removes_one(app, tmp_path):
    known = subscriber("known@example.org")
    db.session().add(SubscriberTag(subscriber_id=known.id, tag="keep-me"))
    db.session().commit()
    path = write_csv(tmp_path / "in.csv", [
        ["new@example.org", "N", "", "", "Volunteer; donor,  Phone   Bank ;;", "NY-10"],
        ["known@example.org", "K", "", "", "donor", ""],
        ["NEW@example.org", "", "", "", "canvasser", ""],  # the same person, later line
        ["bidi@example.org", "", "", "", "ok,\u202eevil", ""],
        ["long@example.org", "", "", "", "x" * 65, ""],
        ["none@example.org", "", "", "", "", ""],
    ], header=HEADER)
    result = run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                     "--consent-note", "test")
    assert result.exit_code == 0, result.output
    tags = tags_by_email()
    assert tags["new@example.org"] == ["canvasser", "donor", "phone bank", "volunteer"]
    assert tags["known@example.org"] == ["donor", "keep-me"]
    assert tags["none@example.org"] == []
    assert "bidi@example.org" not in tags and "long@example.org" not in tags
    assert "tags" in result.output  # the refused lines name the column
    new = db.session().scalars(select(Subscriber).where(
        Subscriber.email == "new@example.org")).one()
    assert new.attributes == {"Congressional District": "NY-10"}  # not a tag

    # The same file again changes nothing; a file without those tags removes none.
    assert run_cli(app, "import", str(path), "--list", "newsletter", "--confirmed",
                   "--consent-note", "test").exit_code == 0
    other = write_csv(tmp_path / "other.csv", [["new@example.org", "", "", "", "", ""]],
                      header=HEADER)
    assert run_cli(app, "import", str(other), "--list", "newsletter").exit_code == 0
    assert tags_by_email()["new@example.org"] == ["canvasser", "donor", "phone bank",
                                                  "volunteer"]


def test_a_person_keeps_at_most_fifty_tags(app, tmp_path):
    known = subscriber("known@example.org")
    db.session().add_all([SubscriberTag(subscriber_id=known.id, tag=f"old{i:02d}")
                          for i in range(48)])
    db.session().commit()
    path = write_csv(tmp_path / "in.csv", [
        ["known@example.org", "", "", "", "a,b,c,d", ""]], header=HEADER)
    assert run_cli(app, "import", str(path), "--list", "newsletter").exit_code == 0
    tags = tags_by_email()["known@example.org"]
    assert len(tags) == 50 and {"a", "b"} <= set(tags) and "c" not in tags
