"""Bad input gets a clear 4xx and stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service import db
from service.models import ConsentRecord, Subscriber
from tests.factories import new_list


def nothing_stored() -> bool:
    session = db.session()
    return (
        session.scalar(select(func.count()).select_from(Subscriber)) == 0
        and session.scalar(select(func.count()).select_from(ConsentRecord)) == 0
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"lists": ["newsletter"]}, "email"),
        ({"email": "a@example.org"}, "lists"),
        ({"email": "not-an-address", "lists": ["newsletter"]}, "email"),
        ({"email": "a" * 250 + "@example.org", "lists": ["newsletter"]}, "email"),
        ({"email": "a@example.org", "lists": ["no-such-list"]}, "lists"),
        ({"email": "a@example.org", "lists": "newsletter"}, "lists"),
        ({"email": 12, "lists": ["newsletter"]}, "email"),
        ({"email": "a@example.org", "lists": [None]}, "lists"),
        ({"email": "a@example.org", "lists": ["newsletter"], "first_name": "x" * 101}, "first_name"),
        ({"email": "a@example.org", "lists": ["newsletter"], "first_name": "Eve\r\nBcc: x@y"}, "first_name"),
        ({"email": "a@example.org", "lists": ["newsletter"], "lang": "fr"}, "lang"),
        ({"email": "a@example.org\r\nBcc: b@example.org", "lists": ["newsletter"]}, "email"),
        ({"email": "'; DROP TABLE subscribers; --", "lists": ["newsletter"]}, "email"),
    ],
)
def test_json_validation(client, body, field):
    response = client.post("/api/v1/subscriptions", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert all(isinstance(m, str) and m for m in response.json["errors"][field])
    assert nothing_stored()


def test_private_list_is_refused(client):
    new_list("staff-only", "Staff", public=False)
    response = client.post("/api/v1/subscriptions", json={"email": "a@example.org", "lists": ["staff-only"]})
    assert response.status_code == 422 and "lists" in response.json["errors"]


@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "{not json", "null"])
def test_wrong_json_shapes(client, payload):
    response = client.post("/api/v1/subscriptions", data=payload, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert "errors" in response.json
    assert nothing_stored()


def test_one_megabyte_body(client):
    huge = {"email": "a@example.org", "lists": ["newsletter"], "first_name": "x" * 1_000_000}
    assert client.post("/api/v1/subscriptions", json=huge).status_code == 413
    form = {"email": "a@example.org", "lists": "newsletter", "first_name": "x" * 1_000_000}
    assert client.post("/subscribe", data=form).status_code == 413
    assert nothing_stored()


def test_unicode_and_idn_addresses_are_accepted(client):
    for email in ["josé@example.org", "user@bücher.example", "ñandú@correo.es"]:
        response = client.post("/api/v1/subscriptions", json={"email": email, "lists": ["newsletter"]})
        assert response.status_code == 202, (email, response.json)
    stored = {s.email for s in db.session().scalars(select(Subscriber))}
    assert stored == {"josé@example.org", "user@bücher.example", "ñandú@correo.es"}


def test_html_form_errors_keep_what_was_typed(client):
    response = client.post("/subscribe", data={"email": "broken", "lists": "newsletter", "first_name": "Zoë"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'value="Zoë"' in page and 'value="broken"' in page and "error" in page
    assert nothing_stored()


def test_sql_looking_names_are_stored_as_text(client):
    name = "Robert'); DROP TABLE subscribers;--"
    assert client.post("/api/v1/subscriptions", json={
        "email": "bobby@example.org", "lists": ["newsletter"], "first_name": name[:100]}).status_code == 202
    assert db.session().scalars(select(Subscriber)).one().first_name == name


def test_rate_limit_per_ip(make_app):
    app = make_app(signup_rate_limit="3/minute")
    client = app.test_client()
    with app.app_context():
        codes = [client.post("/api/v1/subscriptions", json={"email": f"r{i}@example.org", "lists": ["newsletter"]},
                             environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]
        refused = client.post("/api/v1/subscriptions", json={"email": "r9@example.org", "lists": ["newsletter"]},
                              environ_base={"REMOTE_ADDR": "10.0.0.9"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
        assert refused.json["errors"]["_request"][0].startswith("Too many requests")
        assert "X-RateLimit-Limit" not in refused.headers
        other = client.post("/api/v1/subscriptions", json={"email": "s@example.org", "lists": ["newsletter"]},
                            environ_base={"REMOTE_ADDR": "10.0.0.10"})
        assert other.status_code == 202
        limited = client.post("/subscribe", data={"email": "f@example.org", "lists": "newsletter"},
                              environ_base={"REMOTE_ADDR": "10.0.0.9"})
        assert limited.status_code in (202, 303, 429)
        if limited.status_code == 429:
            assert 1 <= int(limited.headers["Retry-After"]) <= 61


def test_proxy_hops_decide_the_client_ip(make_app):
    app = make_app(signup_rate_limit="2/minute", proxy_hops=1)
    client = app.test_client()
    with app.app_context():
        def post(i, forwarded):
            return client.post("/api/v1/subscriptions", json={"email": f"p{i}@example.org", "lists": ["newsletter"]},
                               headers={"X-Forwarded-For": forwarded}).status_code
        # a client cannot dodge the limit by inventing earlier hops: only the last hop counts
        assert [post(0, "1.1.1.1, 9.9.9.9"), post(1, "2.2.2.2, 9.9.9.9"), post(2, "3.3.3.3, 9.9.9.9")] == [202, 202, 429]
        assert post(3, "8.8.8.8") == 202


def test_a_list_made_private_is_refused_after_the_list_cache_expires(app, client, monkeypatch):
    """Web processes keep the public lists for PUBLIC_LISTS_SECONDS; a change made
    elsewhere (another process, straight in the database) is seen once that has passed,
    and a new list at once."""
    from sqlalchemy import update

    from service import lists
    from service.models import MailingList

    def post(slug: str) -> int:
        return client.post("/api/v1/subscriptions",
                           json={"email": "a@example.org", "lists": [slug]}).status_code

    new_list("spring-drive", "Spring", public=True)
    session = db.session()
    assert post("spring-drive") == 202  # new: looked up at once
    session.execute(update(MailingList).where(MailingList.slug == "spring-drive")
                    .values(public=False))
    session.commit()
    monkeypatch.setattr(lists, "PUBLIC_LISTS_SECONDS", 0.0)
    response = client.post("/api/v1/subscriptions",
                           json={"email": "b@example.org", "lists": ["spring-drive"]})
    assert response.status_code == 422 and "lists" in response.json["errors"]
