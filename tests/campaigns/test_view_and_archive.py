"""A recipient's own copy on the web (/view/<token>) and the public archive (+ Atom)."""

from __future__ import annotations

import re

import feedparser
import pytest
from sqlalchemy import select

from service import db
from service.models import Subscriber
from service.subscribers import Evidence
from service.subscriptions import gdpr
from service.tokens import (
    Purpose,
    make_token,
    preferences_url,
    read_token,
    unsubscribe_url,
    view_token,
)
from tests.factories import subscribers

from .api_calls import create, get, to

VIEW = re.compile(r"http://localhost(/view/[A-Za-z0-9_.\-]+)")
PERSONAL = re.compile(r"/(unsubscribe|preferences|view)/[A-Za-z0-9_\-]")
BODY = ("# News\n\nHi {{ first_name or 'friend' }} from {{ state }}. "
        "[Act](https://act.example.org/a)")
ES = {"es": {"subject": "Noticias {{ first_name }}",
             "body": "Hola {{ first_name or 'amiga' }}, noticias."}}


def send(client, staff, run_jobs, **fields) -> int:
    campaign = create(client, staff, body=BODY, **fields)
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/send",
                       headers=staff).status_code == 202
    run_jobs()
    assert get(client, staff, campaign["id"])["status"] == "sent"
    return int(campaign["id"])


def test_every_mail_links_to_the_recipients_own_copy(app, client, api_token, run_jobs, sink):
    ids = subscribers(4, locale_es_every=2)
    staff = api_token("campaigner")
    cid = send(client, staff, run_jobs, variants=ES)
    messages = sink.messages()
    assert len(messages) == 4
    for m in messages:
        path = VIEW.search(m["text"]).group(1)
        assert f"http://localhost{path}" in m["html"]
        i = int(to(m).removeprefix("person").split("@")[0])
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "private, no-store"
        text = page.get_data(as_text=True)
        assert f"First{i}" in text
        own = re.search(r'href="http://localhost/unsubscribe/([^"]+)"', text).group(1)
        assert read_token(Purpose.unsubscribe, own)["s"] == ids[i]
        assert ("Hola" if i % 2 == 0 else "Hi First") in text
        assert path.removeprefix("/view/").startswith(f"{cid}.{ids[i]}.")

    # Tampered, foreign and made-up tokens: a plain 404 page, no stack trace.
    good = view_token(cid, ids[1])
    campaign_part, person, signature = good.split(".")
    tampered = [
        f"{campaign_part}.{ids[2]}.{signature}",  # someone else's copy
        f"{campaign_part}.{person}.{signature[:-1]}A",
        f"{int(campaign_part) + 1}.{person}.{signature}",
        good + "x", "nothing", "1.2", "..", "%00", "a" * 5000,
        make_token(Purpose.unsubscribe, {"s": ids[1], "l": [], "c": cid}),
        make_token(Purpose.preferences, {"s": ids[1]}),
        unsubscribe_url(ids[1]).rsplit("/", 1)[1],
        preferences_url(ids[1]).rsplit("/", 1)[1],
    ]
    for token in tampered:
        page = client.get(f"/view/{token}")
        assert page.status_code == 404, token
        assert "Traceback" not in page.get_data(as_text=True)
        assert "Page not found" in page.get_data(as_text=True)
    # A token for a person who did not receive the campaign.
    assert client.get(f"/view/{view_token(cid, 999999)}").status_code == 404


def test_an_erased_persons_copy_is_gone(app, client, api_token, run_jobs, sink):
    ids = subscribers(2)
    cid = send(client, api_token("campaigner"), run_jobs)
    path = f"/view/{view_token(cid, ids[0])}"
    assert client.get(path).status_code == 200
    session = db.session()
    gdpr.erase(session, session.get(Subscriber, ids[0]), Evidence(endpoint="test"))
    session.commit()
    assert client.get(path).status_code == 404


def test_the_archive_shows_sent_archived_campaigns_without_anything_personal(
        app, client, api_token, run_jobs, sink):
    subscribers(3, locale_es_every=3)
    staff = api_token("campaigner")
    first = send(client, staff, run_jobs, variants=ES, archive=True, subject="First news")
    hidden = send(client, staff, run_jobs, subject="Members only")
    second = send(client, staff, run_jobs, archive=True, subject="Second {{ first_name }}")
    draft = create(client, staff, archive=True, subject="Not yet")["id"]

    page = client.get("/archive")
    assert page.status_code == 200
    assert "max-age" in page.headers["Cache-Control"]
    assert "Accept-Language" in page.headers["Vary"]
    html = page.get_data(as_text=True)
    assert html.index("Second") < html.index("First news")  # newest first
    assert "Members only" not in html and "Not yet" not in html

    entry = client.get(f"/archive/{first}").get_data(as_text=True)
    assert "Hi friend from ." in entry and "First0" not in entry
    assert not PERSONAL.search(entry), PERSONAL.search(entry)
    for other in (hidden, draft, 999999):
        assert client.get(f"/archive/{other}").status_code == 404
    second_page = client.get(f"/archive/{second}").get_data(as_text=True)
    assert "<h1>Second</h1>" in second_page and not PERSONAL.search(second_page)

    # A Spanish visitor reads the Spanish version where there is one.
    spanish = client.get(f"/archive/{first}", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert "Hola amiga, noticias." in spanish.get_data(as_text=True)
    assert "Noticias" in client.get("/archive?lang=es").get_data(as_text=True)

    feed_response = client.get("/archive.atom")
    assert feed_response.status_code == 200
    assert feed_response.mimetype == "application/atom+xml"
    feed = feedparser.parse(feed_response.get_data())
    assert not feed.bozo, feed.bozo_exception
    assert [e.link for e in feed.entries] == [f"http://localhost/archive/{second}",
                                              f"http://localhost/archive/{first}"]
    assert feed.entries[1].title == "First news"
    assert "Hi friend" in feed.entries[1].content[0].value
    assert not PERSONAL.search(feed_response.get_data(as_text=True))
    spanish_feed = feedparser.parse(client.get(
        "/archive.atom", headers={"Accept-Language": "es"}).get_data())
    assert spanish_feed.entries[1].title == "Noticias"

    # Taken out of the archive (allowed after sending): gone from the pages and the feed.
    out = client.patch(f"/api/v1/campaigns/{first}", json={"archive": False},
                       headers=api_token("editor"))
    assert out.status_code == 200 and out.get_json()["archive"] is False
    assert client.get(f"/archive/{first}").status_code == 404
    assert len(feedparser.parse(client.get("/archive.atom").get_data()).entries) == 1
    # Other fields of a sent campaign stay refused.
    assert client.patch(f"/api/v1/campaigns/{first}", json={"archive": True, "name": "x"},
                        headers=api_token("editor")).status_code == 409


@pytest.mark.parametrize("value", ["yes", 1, None, {"a": 1}, [True]])
def test_archive_must_be_a_boolean(app, client, api_token, value):
    response = client.post("/api/v1/campaigns", headers=api_token("editor"), json={
        "name": "x", "kind": "alert", "subject": "s", "body": "b", "lists": ["newsletter"],
        "archive": value})
    assert response.status_code == 422
    assert "archive" in str(response.get_json())


def test_the_view_token_names_campaign_and_person_only(app):
    token = view_token(12, 345)
    assert token.startswith("12.345.") and len(token) < 45
    person = db.session().scalars(select(Subscriber)).first()
    assert person is None
