"""Export and erase need a recent link; an old preferences link still changes the lists.

Preferences links never expire (every mail carries one, and the law wants them working),
but they end up in forwarded mails, archives and shared inboxes. Downloading or erasing
a person's data therefore needs a link mailed within `PREFERENCES_FRESH_DAYS`; an older
one offers to mail a new link to the address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import select

from service import config, db
from service.db import utcnow
from service.models import ConfirmationMail, Subscriber, SubscriptionStatus
from service.tokens import preferences_url, unsubscribe_url
from tests import factories

from .links import path_of

ERASE = {"action": "erase", "confirm_erase": "yes"}


@pytest.fixture
def ana(app) -> Subscriber:  # type: ignore[no-untyped-def]
    """A subscriber of a month ago, with no mail sent to her today."""
    person = factories.subscriber("ana@example.org", first_name="Ana",
                                  lists={"newsletter": SubscriptionStatus.confirmed},
                                  created_at=utcnow() - timedelta(days=30))
    return person


@pytest.fixture
def signed_days_ago(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Links signed inside the block carry a time `days` ago."""

    class Clock:
        def __call__(self, days: float) -> Clock:
            stamp = int((utcnow() - timedelta(days=days)).timestamp())
            monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: stamp)
            return self

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            monkeypatch.undo()

    yield Clock()  # type: ignore[misc]


def old_days() -> int:
    return config.settings().preferences_fresh_days + 1


def test_an_old_link_changes_lists_but_neither_exports_nor_erases(
        app, client, run_jobs, sink, ana, signed_days_ago):  # type: ignore[no-untyped-def]
    with signed_days_ago(old_days()):
        old = path_of(preferences_url(ana.id))
    page = client.get(old)
    assert page.status_code == 200
    assert "/export/" not in page.text and "Erase my data" not in page.text
    assert "Email me a new link" in page.text

    saved = client.post(old, data={"action": "save", "lists": ["newsletter", "action-alerts"],
                                   "lang": "en", "first_name": "Ana"})
    assert saved.status_code == 303  # changing the lists needs no fresh proof
    refused = client.post(old, data=ERASE)
    assert refused.status_code == 403
    assert "Email me a new link" in refused.text
    assert db.session().get(Subscriber, ana.id) is not None

    sink.clear()
    asked = client.post(old, data={"action": "new_link"})
    assert asked.status_code == 200 and "Check your email" in asked.text
    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "ana@example.org"
    fresh = re.search(r"http://localhost(/preferences/[A-Za-z0-9_.\-]+)", mail["text"])
    assert fresh
    page = client.get(fresh.group(1))
    export = re.search(r'href="(/export/[^"]+)"', page.text)
    assert export and client.get(export.group(1)).status_code == 200
    assert client.post(fresh.group(1), data=ERASE).status_code == 200
    db.session().expire_all()
    assert db.session().get(Subscriber, ana.id) is None


def test_asking_for_new_links_is_throttled_like_the_request_form(
        app, client, run_jobs, sink, ana, signed_days_ago):  # type: ignore[no-untyped-def]
    with signed_days_ago(old_days()):
        old = path_of(preferences_url(ana.id))
    for _ in range(5):
        assert client.post(old, data={"action": "new_link"}).status_code == 200
    run_jobs()
    assert len(sink.messages()) == 1
    assert db.session().scalars(select(ConfirmationMail)).all()[0].result.startswith("sent")


def test_a_recent_link_may_export_and_erase(app, client, ana, signed_days_ago):  # type: ignore[no-untyped-def]
    with signed_days_ago(config.settings().preferences_fresh_days - 0.5):
        recent = path_of(preferences_url(ana.id))
    page = client.get(recent).text
    assert "/export/" in page and "Email me a new link" not in page
    assert client.post(recent, data=ERASE).status_code == 200


def test_the_unsubscribe_page_passes_on_its_own_age(app, client, ana, signed_days_ago):  # type: ignore[no-untyped-def]
    """An old unsubscribe link's way to the preferences is no fresher than the link."""
    with signed_days_ago(old_days()):
        old_unsubscribe = path_of(unsubscribe_url(ana.id))
    for answer in (client.get(old_unsubscribe), client.post(old_unsubscribe)):
        link = re.search(r'href="(/preferences/[^"]+)"', answer.text)
        assert link, answer.text
        page = client.get(link.group(1))
        assert page.status_code == 200 and "/export/" not in page.text
        assert client.post(link.group(1), data=ERASE).status_code == 403

    recent = client.get(path_of(unsubscribe_url(ana.id)))
    link = re.search(r'href="(/preferences/[^"]+)"', recent.text)
    assert link and "/export/" in client.get(link.group(1)).text


def test_a_link_claiming_a_later_mailing_than_its_signature_is_not_believed(
        app, client, ana, signed_days_ago):  # type: ignore[no-untyped-def]
    from service.tokens import Purpose, make_token

    future = int((utcnow() + timedelta(days=1)).timestamp())
    with signed_days_ago(old_days()):
        token = make_token(Purpose.preferences, {"s": ana.id, "t": future})
    assert "/export/" not in client.get(f"/preferences/{token}").text


def test_fresh_days_is_a_setting(make_app, sink) -> None:  # type: ignore[no-untyped-def]
    app = make_app(preferences_fresh_days=10)
    with app.app_context():
        person = factories.subscriber("bo@example.org", created_at=utcnow() - timedelta(days=30),
                                      lists={"newsletter": SubscriptionStatus.confirmed})
        stamp = int((utcnow() - timedelta(days=5)).timestamp())
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TimestampSigner, "get_timestamp", lambda self: stamp)
            link = path_of(preferences_url(person.id))
        assert "/export/" in app.test_client().get(link).text


def test_the_offer_speaks_the_subscribers_language(app, client, signed_days_ago):  # type: ignore[no-untyped-def]
    person = factories.subscriber("eva@example.org", locale="es",
                                  created_at=utcnow() - timedelta(days=30))
    with signed_days_ago(old_days()):
        old = path_of(preferences_url(person.id))
    page = client.get(old).text
    days = config.settings().preferences_fresh_days
    assert "Envíame un enlace nuevo" in page and f"en los últimos {days} días" in page
    assert "No se ha borrado nada." in client.post(old, data=ERASE).text
