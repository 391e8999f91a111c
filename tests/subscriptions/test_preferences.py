"""The preference centre: lists, language, name, postal code, stop everything, link by mail."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta

import pytest
from sqlalchemy import update

from service import db
from service.db import utcnow
from service.models import ConfirmationMail, Subscriber
from service.tokens import preferences_url
from tests.browser import ARTIFACTS, CHROMIUM, chromium, needs_chromium
from tests.factories import signed_up
from tests.queries import actions, statuses
from tests.support import serving

from .links import path_of


@pytest.fixture
def ana(client, run_jobs, sink):
    return signed_up(client, run_jobs, sink, "ana@example.org", ["action-alerts"],
                     "es", first_name="Ana", postal_code="94110")


def test_spanish_page_and_get_changes_nothing(app, client, ana):
    url = path_of(preferences_url(ana.id))
    before = actions(ana.id)
    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Tus preferencias" in html and "Alertas de acción" in html
    assert 'value="Ana"' in html and "Borrar mis datos" in html and "/export/" in html
    assert client.head(url).status_code == 200
    assert actions(ana.id) == before


def test_save_lists_language_name_postal_code(app, client, ana):
    url = path_of(preferences_url(ana.id))
    response = client.post(url, data={"action": "save", "lists": ["newsletter"], "lang": "en",
                                      "first_name": "Ana María", "last_name": "Pérez",
                                      "postal_code": "10001"})
    assert response.status_code == 303
    assert statuses(ana.id) == {"action-alerts": "unsubscribed", "newsletter": "confirmed"}
    subscriber = db.session().get(Subscriber, ana.id)
    assert (subscriber.locale, subscriber.first_name, subscriber.last_name) == (
        "en", "Ana María", "Pérez")
    assert (subscriber.postal_code, subscriber.state) == ("10001", "NY")
    recorded = actions(ana.id)[-3:]
    assert ("unsubscribe", "preferences") in recorded
    assert recorded[-1] == ("profile_update", "first_name, last_name, postal_code, locale")
    assert any(a == "subscribe" for a, _ in recorded)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your preferences have been saved." in page  # now in English


def test_invalid_input_is_refused_whole(app, client, ana):
    url = path_of(preferences_url(ana.id))
    response = client.post(url, data={"lists": ["nope"], "lang": "xx", "first_name": "a\nb"})
    assert response.status_code == 422
    assert statuses(ana.id) == {"action-alerts": "confirmed"}


def test_stop_everything(app, client, ana):
    url = path_of(preferences_url(ana.id))
    assert client.post(url, data={"action": "stop_all"}).status_code == 303
    assert statuses(ana.id) == {"action-alerts": "unsubscribed"}


def test_link_by_mail_same_answer_and_throttled(app, client, run_jobs, sink, ana):
    # The confirmation mail of the signup was an hour ago: the throttle allows one more.
    session = db.session()
    session.execute(update(ConfirmationMail).values(at=utcnow() - timedelta(hours=1)))
    session.commit()
    known = client.post("/preferences", data={"email": "ANA@example.org", "lang": "es"})
    unknown = client.post("/preferences", data={"email": "nobody@example.org", "lang": "es"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    run_jobs()
    [mail] = sink.messages()
    assert mail["to"][0]["email"] == "ana@example.org"
    assert mail["subject"] == "Tu enlace para administrar tus suscripciones"
    assert "Hola:" in mail["text"]
    link = re.search(r"http://localhost(/preferences/[A-Za-z0-9_.\-]+)", mail["text"])
    assert link and client.get(link.group(1)).status_code == 200
    sink.clear()
    again = client.post("/preferences", data={"email": "ana@example.org", "lang": "es"})
    assert again.get_data() == known.get_data()
    run_jobs()
    assert sink.messages() == []  # the per-address throttle counts confirmation mails too
    assert client.post("/preferences", data={"email": "not an address"}).status_code == 422


BROWSER_PORT = 18110


@pytest.mark.browser
@needs_chromium
def test_spanish_preference_page_in_chromium(make_app, backend, sink):
    if backend != "sqlite":
        pytest.skip("one live-server run is enough")
    app = make_app()
    with app.app_context():
        from service.queue import task_queue

        client = app.test_client()
        run = task_queue().local.drain  # type: ignore[union-attr]
        ana = signed_up(client, run, sink, "ana@example.org", ["action-alerts"],
                        "es", first_name="Ana", postal_code="94110")
        url = path_of(preferences_url(ana.id))
        ana_id = ana.id

    with serving(app, BROWSER_PORT), chromium() as browser:
        page = browser.new_page(locale="en-US")
        page.goto(f"http://127.0.0.1:{BROWSER_PORT}{url}")
        assert page.locator("h1").inner_text() == "Tus preferencias"
        assert page.locator("html").get_attribute("lang") == "es"
        page.get_by_label("Boletín mensual").check()
        page.get_by_label("Nombre", exact=True).fill("Ana Lucía")
        page.get_by_role("button", name="Guardar mis preferencias").click()
        page.wait_for_url("**saved=1")
        assert page.get_by_role("status").inner_text() == (
            "Tus preferencias se han guardado.")
        page.screenshot(path=str(ARTIFACTS / "preferences-es.png"), full_page=True)
    with app.app_context():
        assert statuses(ana_id) == {"action-alerts": "confirmed", "newsletter": "confirmed"}
        assert db.session().get(Subscriber, ana_id).first_name == "Ana Lucía"
    assert shutil.which(str(CHROMIUM))


def test_request_form_language_from_lang_then_accept_language(app, client):
    spanish = client.get("/preferences", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert "Administra tus suscripciones" in spanish.get_data(as_text=True)
    english = client.get("/preferences?lang=en", headers={"Accept-Language": "es"})
    assert "Manage your subscriptions" in english.get_data(as_text=True)
    bad = client.get("/preferences/nonsense", headers={"Accept-Language": "es"})
    assert bad.status_code == 400 and "no es válido" in bad.get_data(as_text=True)
