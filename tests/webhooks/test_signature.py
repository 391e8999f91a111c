"""The webhook accepts only fresh, correctly signed JSON arrays of events."""

from __future__ import annotations

import base64
import json
import time

from sqlalchemy import func, select

from service import db
from service.models import WebhookBatch

from .events import URL, event


def stored() -> int:
    """Events in the batches waiting for the job."""
    return db.session().scalar(select(func.sum(WebhookBatch.events))) or 0


def test_signed_batch_is_stored(post_events):
    response = post_events([event("processed"), event("delivered")])
    assert response.status_code == 200
    assert response.json == {"received": 2, "queued": 2}
    assert stored() == 2


def test_one_byte_change_of_body_or_timestamp_is_refused(client, signer):
    body = json.dumps([event("delivered")]).encode() + b"\r\n"
    headers = signer.headers(body)
    tampered = body.replace(b"delivered", b"delivereD")
    assert client.post(URL, data=tampered, headers=headers).status_code == 403
    assert client.post(URL, data=body.rstrip(b"\n"), headers=headers).status_code == 403
    moved = dict(headers)
    moved["X-Twilio-Email-Event-Webhook-Timestamp"] = str(
        int(headers["X-Twilio-Email-Event-Webhook-Timestamp"]) - 1
    )
    assert client.post(URL, data=body, headers=moved).status_code == 403
    assert stored() == 0
    assert client.post(URL, data=body, headers=headers).status_code == 200  # the original
    assert stored() == 1


def test_malformed_signature_headers_are_403_not_500(client, signer):
    body = json.dumps([event("delivered")]).encode()
    good = signer.headers(body)
    for bad in ["", "not base64 at all!!", "QUJD", base64.b64encode(b"\x30\x02junk").decode(),
                "=" * 7, "é"]:
        headers = {**good, "X-Twilio-Email-Event-Webhook-Signature": bad}
        assert client.post(URL, data=body, headers=headers).status_code == 403, bad
    for bad_ts in ["", "yesterday", "1e9"]:
        headers = {**good, "X-Twilio-Email-Event-Webhook-Timestamp": bad_ts}
        assert client.post(URL, data=body, headers=headers).status_code == 403, bad_ts
    no_headers = client.post(URL, data=body, headers={"Content-Type": "application/json"})
    assert no_headers.status_code == 403
    invalid_utf8 = b"[\xff]"
    refused = client.post(URL, data=invalid_utf8, headers=signer.headers(invalid_utf8))
    assert refused.status_code == 403
    assert stored() == 0


def test_stale_or_future_timestamps_are_refused(post_events):
    assert post_events([event("open")], timestamp=int(time.time()) - 601).status_code == 403
    assert post_events([event("open")], timestamp=int(time.time()) + 3600).status_code == 403
    assert post_events([event("open")], timestamp=int(time.time()) - 590).status_code == 200
    assert stored() == 1


def test_max_age_is_configurable(make_app, signer):
    app = make_app(sendgrid_webhook_public_key=signer.public_key_b64,
                   webhook_max_age_seconds=30)
    body = b"[]"
    with app.test_client() as client:
        old = signer.headers(body, timestamp=int(time.time()) - 60)
        assert client.post(URL, data=body, headers=old).status_code == 403
        assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 200


def test_signed_but_not_an_array_of_objects_is_400(post_events):
    for body in [b'{"event": "open"}', b"[1, 2]", b"not json", b'"x"', b"[[]]"]:
        assert post_events(body).status_code == 400, body
    assert stored() == 0


def test_no_key_configured_answers_503_and_accepts_nothing(make_app, signer):
    app = make_app()  # no SENDGRID_WEBHOOK_PUBLIC_KEY
    body = json.dumps([event("bounce")]).encode()
    with app.test_client() as client, app.app_context():
        assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 503
        assert stored() == 0


def test_an_unusable_key_is_503(make_app, signer):
    app = make_app(sendgrid_webhook_public_key="bm90IGEga2V5")
    body = b"[]"
    with app.test_client() as client:
        assert client.post(URL, data=body, headers=signer.headers(body)).status_code == 503


def test_another_key_is_refused(make_app, signer):
    from sendgrid_sink.signing import new_private_key

    from .events import Signer

    stranger = Signer(new_private_key())
    app = make_app(sendgrid_webhook_public_key=signer.public_key_b64)
    body = b"[]"
    with app.test_client() as client:
        assert client.post(URL, data=body, headers=stranger.headers(body)).status_code == 403


def test_webhook_needs_no_csrf_token_and_counts_metrics(app, post_events, client):
    assert post_events([event("delivered"), event("delivered")]).status_code == 200
    assert post_events([event("open")], timestamp=1).status_code == 403
    text = client.get("/metrics").get_data(as_text=True)
    assert 'actionlist_webhook_events_total{event="delivered",outcome="received"} 2.0' in text
    assert 'outcome="rejected"' in text
