"""A signup and a postal code changed in the preference centre store the state, county
and time zone of the code (the PostgreSQL one-statement signup and the general path)."""

from __future__ import annotations

from sqlalchemy import select

from service import db
from service.models import Subscriber
from service.tokens import preferences_url

from .links import path_of


def stored(email: str) -> Subscriber:
    session = db.session()
    session.expire_all()
    return session.scalars(select(Subscriber).where(Subscriber.email_key == email)).one()


def test_signup_and_preferences_store_the_place(client):
    for email, code in (("ana@example.org", "11201-2345"), ("bo@example.org", "SW1A 1AA")):
        response = client.post("/api/v1/subscriptions", json={
            "email": email, "lists": ["newsletter"], "postal_code": code})
        assert response.status_code == 202, response.json
    ana = stored("ana@example.org")
    assert (ana.state, ana.county, ana.timezone) == ("NY", "Kings County", "America/New_York")
    bo = stored("bo@example.org")
    assert (bo.state, bo.county, bo.timezone) == ("", "", "")

    response = client.post(path_of(preferences_url(ana.id)), data={
        "action": "save", "lists": ["newsletter"], "lang": "en", "postal_code": "99634"})
    assert response.status_code == 303
    ana = stored("ana@example.org")
    assert (ana.state, ana.county, ana.timezone) == (
        "AK", "Bethel Census Area", "America/Anchorage")
