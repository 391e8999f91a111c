"""Sending end to end: API → RQ jobs → SendGrid transport → the sink over HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from service.tokens import Purpose, read_token
from tests.factories import subscribers

from .api_calls import create, get, to


def test_every_recipient_gets_their_language_links_and_footer(
    app: Flask, client: FlaskClient, api_token: Callable[[str], dict[str, str]],
    run_jobs: Callable[[], None], sink,
) -> None:
    ids = subscribers(25, locale_es_every=5)
    staff = api_token("campaigner")
    campaign = create(client, staff, variants={"es": {"subject": "Hola {{ first_name }}",
                                                       "body": "Hola {{ first_name }}."}},
                      source_code="nov26")
    cid = campaign["id"]
    assert client.get(f"/api/v1/campaigns/{cid}/audience", headers=staff).get_json() == {
        "count": 25}
    assert client.post(f"/api/v1/campaigns/{cid}/send", headers=staff).status_code == 202
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "sent"
    assert data["counts"] | {} == {"total": 25, "queued": 0, "sent": 25, "failed": 0,
                                   "skipped": 0}
    messages = sink.messages()
    assert Counter(to(m) for m in messages) == Counter(
        f"person{i}@example.com" for i in range(25))
    for m in messages:
        i = int(to(m).removeprefix("person").split("@")[0])
        if i % 5 == 0:
            assert m["subject"] == f"Hola First{i}"
            assert "Darse de baja" in m["html"] and "Darse de baja" in m["text"]
        else:
            assert m["subject"] == f"Hello First{i}"
            assert "from CA" in m["text"] and "Unsubscribe" in m["html"]
            assert "source=nov26" in m["html"]
        url = m["headers"]["List-Unsubscribe"].strip("<>")
        assert m["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        payload = read_token(Purpose.unsubscribe, url.rsplit("/", 1)[1])
        assert payload["s"] == ids[i] and payload["c"] == cid
        assert url in m["html"] and url in m["text"]
        assert "/preferences/" in m["html"]
        assert "Drug Policy Action" in m["html"] and "1 Main St, Springfield" in m["text"]
        assert m["custom_args"] == {"campaign_id": str(cid), "subscriber_id": str(ids[i])}
        assert "-@" not in m["html"] + m["text"] + m["subject"]


def test_links_share_one_placeholder_unless_the_public_url_needs_escaping(
    app: Flask, client: FlaskClient, api_token: Callable[[str], dict[str, str]],
) -> None:
    from dataclasses import replace

    from service import db
    from service.campaigns.render import render_variant
    from service.models import Campaign

    cid = create(client, api_token("campaigner"))["id"]
    campaign = db.session().get(Campaign, cid)
    assert campaign is not None
    settings = app.extensions["settings"]
    plain = render_variant(campaign, "en", settings)
    assert "unsubscribe_url" in plain.text_names and "unsubscribe_url" not in plain.html_names
    assert "-@unsubscribe_url@-" in plain.html and "-@unsubscribe_url@h-" not in plain.html
    odd = render_variant(campaign, "en", replace(settings, public_url="https://x.org/a&b"))
    assert "unsubscribe_url" in odd.html_names and "-@unsubscribe_url@h-" in odd.html
    url = "https://x.org/a&b/unsubscribe/t"
    subs = odd.substitutions({"unsubscribe_url": url})
    assert subs["-@unsubscribe_url@h-"] == "https://x.org/a&amp;b/unsubscribe/t"
    assert subs["-@unsubscribe_url@-"] == url
