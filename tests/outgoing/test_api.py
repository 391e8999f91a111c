"""The staff API of outgoing webhooks: shapes, the secret shown once, roles, and refusals
of bad or internal receiver URLs with a 422 naming the field (nothing stored)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.models import AuditRecord, OutgoingEndpoint
from service.outbound import EVENT_TYPES

from .conftest import fresh

API = "/api/v1/webhooks"


def count() -> int:
    return int(fresh().scalar(select(func.count()).select_from(OutgoingEndpoint)))


def test_secret_is_shown_once_and_never_again(app, client, admin, receiver):
    made = client.post(API, headers=admin, json={"url": receiver.url,
                                                 "events": ["campaign.sent"]})
    assert made.status_code == 201
    data = made.get_json()
    secret = data["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert data["events"] == ["campaign.sent"] and data["enabled"] is True
    assert data["url"] == receiver.url and data["waiting"] == 0
    endpoint_id = data["id"]
    answers = [
        client.get(API, headers=admin),
        client.get(f"{API}/{endpoint_id}", headers=admin),
        client.patch(f"{API}/{endpoint_id}", headers=admin, json={"events": list(EVENT_TYPES)}),
        client.get(f"{API}/{endpoint_id}/deliveries", headers=admin),
        client.post(f"{API}/{endpoint_id}/test", headers=admin),
    ]
    for answer in answers:
        assert answer.status_code in (200, 202), answer.get_json()
        assert secret not in answer.get_data(as_text=True)
        assert "secret" not in answer.get_data(as_text=True)
    # stored encrypted, not as typed
    assert secret not in fresh().get(OutgoingEndpoint, endpoint_id).secret
    listed = answers[0].get_json()["items"]
    assert [e["id"] for e in listed] == [endpoint_id]
    assert answers[2].get_json()["events"] == list(EVENT_TYPES)
    # the audit log has every change, never the secret
    actions = fresh().scalars(select(AuditRecord.action).order_by(AuditRecord.id)).all()
    assert actions == ["webhook.create", "webhook.update", "webhook.test"]
    assert client.delete(f"{API}/{endpoint_id}", headers=admin).status_code == 204
    assert client.get(f"{API}/{endpoint_id}", headers=admin).status_code == 404
    assert count() == 0


@pytest.mark.parametrize("role", ["viewer", "editor", "campaigner"])
def test_only_admins(app, client, api_token, admin, receiver, role):
    made = client.post(API, headers=admin, json={"url": receiver.url,
                                                 "events": ["campaign.sent"]}).get_json()
    staff = api_token(role)
    endpoint = f"{API}/{made['id']}"
    for method, url, body in [
        ("post", API, {"url": receiver.url, "events": ["campaign.sent"]}),
        ("get", API, None), ("get", endpoint, None),
        ("patch", endpoint, {"enabled": False}), ("delete", endpoint, None),
        ("get", f"{endpoint}/deliveries", None), ("post", f"{endpoint}/test", None),
    ]:
        answer = getattr(client, method)(url, headers=staff, json=body)
        assert answer.status_code == 403, (method, url)
        assert getattr(client, method)(url, json=body).status_code == 401
    assert count() == 1 and fresh().get(OutgoingEndpoint, made["id"]).enabled


@pytest.mark.parametrize(("body", "field"), [
    ({"events": ["campaign.sent"]}, "url"),
    ({"url": "ftp://example.org/x", "events": ["campaign.sent"]}, "url"),
    ({"url": "javascript:alert(1)", "events": ["campaign.sent"]}, "url"),
    ({"url": "http:///nohost", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://user:pw@127.0.0.1/", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1:99999/", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1/\u202egnp.exe", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1/a\nb", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1/ a", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1/" + "a" * 3000, "events": ["campaign.sent"]}, "url"),
    ({"url": 42, "events": ["campaign.sent"]}, "url"),
    ({"url": ["http://127.0.0.1/"], "events": ["campaign.sent"]}, "url"),
    ({"url": {"a": {"b": "c"}}, "events": ["campaign.sent"]}, "url"),
    ({"url": "http://no-such-host.invalid/", "events": ["campaign.sent"]}, "url"),
    ({"url": "http://127.0.0.1/"}, "events"),
    ({"url": "http://127.0.0.1/", "events": []}, "events"),
    ({"url": "http://127.0.0.1/", "events": "campaign.sent"}, "events"),
    ({"url": "http://127.0.0.1/", "events": ["campaign.sent", "subscriber.everything"]},
     "events"),
    ({"url": "http://127.0.0.1/", "events": [["campaign.sent"]]}, "events"),
    ({"url": "http://127.0.0.1/", "events": [{"x": 1}]}, "events"),
    ({"url": "http://127.0.0.1/", "events": ["campaign.sent\u0000"]}, "events"),
    ({"url": "http://127.0.0.1/", "events": ["x" * 10_000]}, "events"),
    ({"url": "http://127.0.0.1/", "events": ["campaign.sent"] * 1000}, "events"),
])
def test_bad_input_is_a_422_naming_the_field(app, client, admin, body, field):
    answer = client.post(API, headers=admin, json=body)
    assert answer.status_code == 422, answer.get_json()
    assert field in str(answer.get_json()["errors"])
    assert count() == 0


def test_bad_changes_are_refused_and_change_nothing(app, client, admin, receiver):
    made = client.post(API, headers=admin, json={"url": receiver.url,
                                                 "events": ["campaign.sent"]}).get_json()
    url = f"{API}/{made['id']}"
    for body, field in [({"url": "gopher://x/"}, "url"), ({"events": []}, "events"),
                        ({"enabled": "yes"}, "enabled"), ({"enabled": 1}, "enabled"),
                        ({"url": "http://127.0.0.1/ok", "events": ["nope"]}, "events")]:
        answer = client.patch(url, headers=admin, json=body)
        assert answer.status_code == 422, (body, answer.get_json())
        assert field in answer.get_json()["errors"], body
    shown = client.get(url, headers=admin).get_json()
    assert (shown["url"], shown["events"], shown["enabled"]) == (
        receiver.url, ["campaign.sent"], True)
    nested: object = "x"
    for _ in range(100):
        nested = [nested]
    assert client.patch(url, headers=admin, json={"events": nested}).status_code in (400, 422)
    for bad_id in ("0", "99999", "1" * 30, "-1", "x"):
        assert client.get(f"{API}/{bad_id}", headers=admin).status_code == 404
    assert client.get(f"{url}/deliveries?before=x", headers=admin).status_code == 422
    assert client.get(f"{url}/deliveries?limit=100000", headers=admin).status_code == 422


INTERNAL = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.9.9.9:8080/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/hook", "loopback"),
    ("http://[fc00::1]/hook", "private"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://100.64.0.1/hook", "public"),
    ("http://localhost:8000/hook", "loopback"),
    ("https://LocalHost/hook", "loopback"),
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one number
]


@pytest.mark.parametrize(("url", "why"), INTERNAL)
def test_internal_addresses_are_refused(make_app, signer, url, why):
    from tests import factories

    strict = make_app(sendgrid_webhook_public_key=signer.public_key_b64)
    with strict.app_context():
        client = strict.test_client()
        headers = factories.bearer(factories.api_token("admin"))
        answer = client.post(API, headers=headers, json={"url": url,
                                                         "events": ["campaign.sent"]})
        assert answer.status_code == 422, answer.get_json()
        (message,) = answer.get_json()["errors"]["url"]
        assert why in message and "public addresses" in message
        assert count() == 0


def test_delivery_checks_the_address_again(make_app, signer, app, client, admin, receiver,
                                           run_jobs):
    """An endpoint saved while its host was public (here: allowed) is refused at delivery
    once it points inside (DNS rebinding), and the receiver is never contacted."""
    from service.models import OutgoingDelivery
    from service.outgoing.delivery import deliver

    made = client.post(API, headers=admin, json={"url": receiver.url,
                                                 "events": ["campaign.sent"]}).get_json()
    strict = make_app(sendgrid_webhook_public_key=signer.public_key_b64)
    with strict.app_context():
        from service import db
        from service.outgoing.endpoints import send_test

        session = db.session()
        event = send_test(session, session.get(OutgoingEndpoint, made["id"]), "test")
        session.info.pop("jobs_after_commit")
        session.commit()
        row_id = session.scalar(select(OutgoingDelivery.id).where(
            OutgoingDelivery.event_id == event.id))
        assert deliver(session, row_id, 0) == "failed"
    assert receiver.received == []
    log = client.get(f"{API}/{made['id']}/deliveries", headers=admin).get_json()["items"]
    assert log[0]["status_code"] is None
    assert log[0]["error"].startswith("refused: The host 127.0.0.1 is a loopback address")
