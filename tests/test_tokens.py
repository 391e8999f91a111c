"""Signed links: tampering, purposes, key rotation, no address in the payload."""

from __future__ import annotations

import base64
import functools
import json

import pytest

from service.tokens import (
    Purpose,
    confirm_url,
    list_unsubscribe_headers,
    make_token,
    preferences_url,
    unsubscribe_url,
)
from tests.factories import list_ids, signed_up
from tests.queries import statuses
from tests.subscriptions.links import ONE_CLICK, path_of
from tests.support import run_jobs_of


def _flip(token: str, index: int) -> str:
    char = token[index]
    return token[:index] + ("A" if char != "A" else "B") + token[index + 1:]


@pytest.fixture
def pat(client, run_jobs, sink):
    return signed_up(client, run_jobs, sink, "pat@example.org", ["newsletter"])


@pytest.mark.parametrize("where", [0, 10, -3])
def test_tampered_token_is_refused_and_changes_nothing(app, client, pat, where):
    url = path_of(unsubscribe_url(pat.id, list_ids("newsletter")))
    prefix, token = url.rsplit("/", 1)
    bad = f"{prefix}/{_flip(token, where)}"
    assert client.get(bad).status_code == 400
    assert client.post(bad, data=ONE_CLICK,
                       content_type="application/x-www-form-urlencoded").status_code == 400
    assert client.post(f"/preferences/{_flip(token, where)}", data={"action": "stop_all"}
                       ).status_code == 400
    assert statuses(pat.id) == {"newsletter": "confirmed"}


def test_a_token_only_works_for_its_purpose(app, client, pat):
    confirm_token = confirm_url(pat.id, list_ids("newsletter")).rsplit("/", 1)[1]
    answer = client.post(f"/unsubscribe/{confirm_token}", data=ONE_CLICK,
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 400 and "not valid" in answer.get_data(as_text=True)
    pref_token = preferences_url(pat.id).rsplit("/", 1)[1]
    assert client.post(f"/unsubscribe/{pref_token}").status_code == 400
    assert client.get(f"/export/{pref_token}").status_code == 400
    unsub_token = unsubscribe_url(pat.id).rsplit("/", 1)[1]
    assert client.get(f"/preferences/{unsub_token}").status_code == 400
    assert client.post(f"/confirm/{unsub_token}").status_code == 400
    assert statuses(pat.id) == {"newsletter": "confirmed"}


def test_payload_carries_ids_not_the_address(app, pat):
    for purpose in Purpose:
        token = make_token(purpose, {"s": pat.id, "l": [1]})
        body = token.split(".")[0]
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        assert payload == {"s": pat.id, "l": [1]}
        assert "example.org" not in token


def test_list_unsubscribe_headers(app, pat):
    headers = list_unsubscribe_headers(pat.id, list_ids("newsletter"), campaign_id=5)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")


def test_old_key_works_while_in_fallbacks_and_not_after(make_app, sink):
    old = make_app(secret_key="key-2025")
    with old.app_context():
        pat = signed_up(old.test_client(), functools.partial(run_jobs_of, old), sink,
                        "pat@example.org", ["newsletter", "action-alerts"])
        news = path_of(unsubscribe_url(pat.id, list_ids("newsletter")))
        alerts = path_of(unsubscribe_url(pat.id, list_ids("action-alerts")))
        subscriber_id = pat.id

    retired = make_app(secret_key="key-2026")
    with retired.app_context():
        client = retired.test_client(use_cookies=False)
        assert client.get(news).status_code == 400
        assert client.post(alerts, data=ONE_CLICK,
                           content_type="application/x-www-form-urlencoded").status_code == 400
        assert statuses(subscriber_id) == {"newsletter": "confirmed", "action-alerts": "confirmed"}

    rotated = make_app(secret_key="key-2026", secret_key_fallbacks=("key-2025",))
    with rotated.app_context():
        client = rotated.test_client(use_cookies=False)
        assert client.get(news).status_code == 200
        response = client.post(news, data=ONE_CLICK,
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert statuses(subscriber_id) == {"newsletter": "unsubscribed",
                                           "action-alerts": "confirmed"}
        # New links are signed with the new key only.
        fresh = path_of(unsubscribe_url(subscriber_id, list_ids("action-alerts")))
    with retired.app_context():
        assert retired.test_client().get(fresh).status_code == 200


def test_batch_links_are_the_same_tokens_as_one_at_a_time(app, monkeypatch):
    """A campaign batch's links (BatchLinks) are byte for byte `unsubscribe_url` and
    `preferences_url` of the same second, and the stock itsdangerous serializer with the
    purpose's salt verifies them (and only that purpose's)."""
    from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

    from service.tokens import SALTS, BatchLinks

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_800_000_123)
    settings = app.extensions["settings"]
    links = BatchLinks(settings, [7, 2], 41)
    for subscriber_id in (1, 99, 10**12):
        unsubscribe = links.unsubscribe_url(subscriber_id)
        preferences = links.preferences_url(subscriber_id)
        with app.app_context():
            assert unsubscribe == unsubscribe_url(subscriber_id, [2, 7], 41)
            assert preferences == preferences_url(subscriber_id)
        stock = {p: URLSafeTimedSerializer(settings.signing_keys, salt=SALTS[p]) for p in Purpose}
        token = unsubscribe.rsplit("/", 1)[1]
        assert stock[Purpose.unsubscribe].loads(token) == {"s": subscriber_id, "l": [2, 7], "c": 41}
        assert stock[Purpose.preferences].loads(preferences.rsplit("/", 1)[1]) == {"s": subscriber_id}
        with pytest.raises(BadSignature):
            stock[Purpose.preferences].loads(token)


def test_view_tokens_batch_tail_purpose_and_key_rotation(make_app):
    """A batch's view link tail is what `view_token` ends with; the stock itsdangerous
    Signer with the view salt verifies it; other purposes' salts do not; a key in the
    fallbacks still reads it, a retired one does not."""
    from itsdangerous import BadSignature, Signer

    from service.tokens import SALTS, BatchLinks, TokenError, read_view_token, view_token

    old = make_app(secret_key="key-2025")
    with old.app_context():
        settings = old.extensions["settings"]
        links = BatchLinks(settings, [2], 41)
        for subscriber_id in (1, 99, 10**12):
            token = view_token(41, subscriber_id)
            assert token == f"41.{links.view_tail(subscriber_id)}"
            assert read_view_token(token) == (41, subscriber_id)
            stock = Signer(settings.signing_keys, salt=SALTS[Purpose.view])
            assert stock.unsign(token) == f"41.{subscriber_id}".encode()
            with pytest.raises(BadSignature):
                Signer(settings.signing_keys, salt=SALTS[Purpose.unsubscribe]).unsign(token)
        kept = view_token(41, 99)
        with pytest.raises(TokenError):
            read_view_token(make_token(Purpose.preferences, {"s": 99}))
    with make_app(secret_key="key-2026").app_context(), pytest.raises(TokenError):
        read_view_token(kept)
    with make_app(secret_key="key-2026", secret_key_fallbacks=("key-2025",)).app_context():
        assert read_view_token(kept) == (41, 99)
