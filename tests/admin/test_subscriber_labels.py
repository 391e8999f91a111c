"""The subscriber page shows tags and attributes to everyone and lets campaigners edit
them (CSRF, audit record, errors naming the field, nothing stored on a refusal)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from service import db
from service.models import AuditRecord, Subscriber, SubscriberTag
from tests.factories import subscriber

from .signin import Staff


def reload(sid: int) -> Subscriber:
    session = db.session()
    session.expire_all()
    row = session.get(Subscriber, sid)
    assert row is not None
    return row


def person() -> Subscriber:
    row = subscriber("ana@example.org", postal_code="11201", state="NY",
                     attributes={"cd": "NY-10", "chapter": "North"})
    db.session().add(SubscriberTag(subscriber_id=row.id, tag="donor"))
    db.session().commit()
    return row


def test_viewers_see_tags_and_attributes_but_cannot_edit(
    staff: Callable[[str], Staff]
) -> None:
    row = person()
    viewer = staff("viewer")
    page = viewer.get(f"/admin/subscribers/{row.id}").text
    assert "donor" in page and "NY-10" in page and "chapter" in page
    assert "/labels" not in page
    assert viewer.post(f"/admin/subscribers/{row.id}/labels",
                       {"tags": "x"}).status_code == 403
    editor = staff("editor")
    assert editor.post(f"/admin/subscribers/{row.id}/labels",
                       {"tags": "x"}).status_code == 403
    assert [t.tag for t in reload(row.id).tag_rows] == ["donor"]


def test_campaigners_edit_tags_and_attributes_with_an_audit_record(
    staff: Callable[[str], Staff]
) -> None:
    row = person()
    campaigner = staff("campaigner")
    page = campaigner.get(f"/admin/subscribers/{row.id}").text
    assert f'action="/admin/subscribers/{row.id}/labels"' in page
    assert 'value="donor"' in page
    response = campaigner.post(f"/admin/subscribers/{row.id}/labels", {
        "tags": "Donor; Phone bank, volunteer", "attr_key": ["chapter", "cd"],
        "attr_value": ["South", ""], "new_key": "ward", "new_value": "9"})
    assert response.status_code == 302
    again = reload(row.id)
    assert [t.tag for t in again.tag_rows] == ["donor", "phone bank", "volunteer"]
    assert again.attributes == {"chapter": "South", "ward": "9"}
    [audit] = db.session().scalars(select(AuditRecord).where(
        AuditRecord.action == "subscriber.edit")).all()
    assert audit.actor == f"staff:{campaigner.email}"
    assert audit.detail["changes"]["attributes"] == {"set": ["chapter", "ward"],
                                                     "removed": ["cd"]}
    page = campaigner.get(f"/admin/subscribers/{row.id}").text
    assert "Tags and attributes saved." in page


def test_without_the_csrf_token_nothing_changes(staff: Callable[[str], Staff]) -> None:
    row = person()
    campaigner = staff("campaigner")
    response = campaigner.client.post(f"/admin/subscribers/{row.id}/labels",
                                      data={"tags": "x"})
    assert response.status_code == 400
    assert [t.tag for t in reload(row.id).tag_rows] == ["donor"]


def test_bad_values_are_refused_with_clear_errors(staff: Callable[[str], Staff]) -> None:
    row = person()
    campaigner = staff("campaigner")
    for form, words in [
        ({"tags": "ok, " + "x" * 65}, "Tag 2: At most 64 characters."),
        ({"tags": "ok, bad\u202etag"}, "Tag 2: Must not contain characters that change"),
        ({"tags": "", "new_key": "cd", "new_value": "a\u0007b"},
         "Attribute “cd”: Must not contain line breaks"),
        ({"tags": "", "new_key": "", "new_value": "lost"},
         "Attributes: Must not be empty."),
    ]:
        response = campaigner.post(f"/admin/subscribers/{row.id}/labels", form)
        assert response.status_code == 422, form
        assert words in response.text, response.text
        assert 'role="alert"' in response.text
        again = reload(row.id)
        assert [t.tag for t in again.tag_rows] == ["donor"]
        assert again.attributes == {"cd": "NY-10", "chapter": "North"}
    assert db.session().scalars(select(AuditRecord).where(
        AuditRecord.action == "subscriber.edit")).all() == []


def test_spanish(staff: Callable[[str], Staff]) -> None:
    row = person()
    page = staff("campaigner").get(f"/admin/subscribers/{row.id}",
                                   headers={"Accept-Language": "es"}).text
    assert "Etiquetas y atributos" in page
