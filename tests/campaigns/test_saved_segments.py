"""Saved segments through the API: roles, hostile input (422 naming the part, nothing
stored), the count over every confirmed subscriber, campaigns that follow a saved
segment until sending starts (the freeze copies it), and deleting one in use (409)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from sendgrid_sink import SinkServer
from service import db
from service.models import Delivery, SavedSegment, Subscriber, SubscriberTag
from tests.factories import subscribers

from .api_calls import create, get

Headers = Callable[[str], dict[str, str]]


def saved_count() -> int:
    db.session().rollback()
    return int(db.session().scalar(select(func.count()).select_from(SavedSegment)) or 0)


def post(client: FlaskClient, headers: dict[str, str], body: Any) -> Any:
    return client.post("/api/v1/segments", headers=headers, json=body)


def test_roles_viewer_reads_campaigner_writes(client: FlaskClient, api_token: Headers) -> None:
    campaigner, editor, viewer = api_token("campaigner"), api_token("editor"), api_token("viewer")
    body = {"name": "New Yorkers", "segment": {"states": ["NY"]}}
    assert post(client, viewer, body).status_code == 403
    assert post(client, editor, body).status_code == 403
    assert client.post("/api/v1/segments", json=body).status_code == 401
    created = post(client, campaigner, body)
    assert created.status_code == 201, created.text
    sid = created.get_json()["id"]
    assert created.get_json()["segment"] == {"states": ["NY"]}
    assert [s["id"] for s in client.get("/api/v1/segments", headers=viewer).get_json()] == [sid]
    assert client.get(f"/api/v1/segments/{sid}", headers=viewer).status_code == 200
    for headers in (viewer, editor):
        assert client.patch(f"/api/v1/segments/{sid}", headers=headers,
                            json={"name": "x"}).status_code == 403
        assert client.delete(f"/api/v1/segments/{sid}", headers=headers).status_code == 403
    renamed = client.patch(f"/api/v1/segments/{sid}", headers=campaigner,
                           json={"name": "NYC"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "NYC"
    assert renamed.get_json()["segment"] == {"states": ["NY"]}
    assert client.delete(f"/api/v1/segments/{sid}", headers=campaigner).status_code == 204
    assert client.get(f"/api/v1/segments/{sid}", headers=viewer).status_code == 404
    assert client.get("/api/v1/segments/99999999999", headers=viewer).status_code == 404


HOSTILE_NAMES = ["", "   ", "Rally\x00", "New\nYork", "Eve\u202egro.live", "x" * 201, 5,
                 None, ["a"], {"a": 1}]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused(client: FlaskClient, api_token: Headers, name: Any) -> None:
    answer = post(client, api_token("campaigner"), {"name": name, "segment": {}})
    assert answer.status_code == 422, answer.text
    assert "name" in answer.get_json()["errors"]
    assert saved_count() == 0


DEEP: Any = {"cd": ["x"]}
for _ in range(40):
    DEEP = {"cd": [DEEP]}

HOSTILE_SEGMENTS: list[tuple[str, Any]] = [
    ("segment", "NY"),
    ("segment", ["states"]),
    ("segment.colour", {"colour": ["red"]}),
    ("segment.states", {"states": "NY"}),
    ("segment.states", {"states": ["New York"]}),
    ("segment.states", {"states": [["NY"]]}),
    ("segment.counties", {"counties": ["Kings County"]}),
    ("segment.counties", {"counties": ["Kings\x00 County, NY"]}),
    ("segment.attributes", {"attributes": ["cd"]}),
    ("segment.attributes.cd", {"attributes": {"cd": "NY-10"}}),
    ("segment.attributes.cd", {"attributes": {"cd": [{"nested": "NY-10"}]}}),
    ("segment.attributes.cd", {"attributes": {"cd": ["NY\u202e10"]}}),
    ("segment.attributes.cd", {"attributes": {"cd": ["x"] * 501}}),
    ("segment.attributes.cd", {"attributes": {"cd": ["x" * 201]}}),
    ("segment.attributes.cd", {"attributes": {"cd": []}}),
    ("segment.attributes", {"attributes": {f"k{i}": None for i in range(21)}}),
    ("segment.attributes", {"attributes": {"c\nd": ["x"]}}),
    ("segment.tags_any", {"tags_any": ["volunteer", 5]}),
    ("segment.tags_none", {"tags_none": ["t" * 65]}),
    ("segment.opened", {"opened": {"campaigns": [1], "within_days": 3}}),
    ("segment.opened", {"opened": {"since": 3}}),
    ("segment.opened.campaigns", {"opened": {"campaigns": ["1"]}}),
    ("segment.opened.campaigns", {"opened": {"campaigns": [True]}}),
    ("segment.opened.campaigns", {"opened": {"campaigns": [2**40]}}),
    ("segment.opened.campaigns", {"opened": {"campaigns": list(range(1, 102))}}),
    ("segment.not_received.within_days", {"not_received": {"within_days": 0}}),
    ("segment.not_received.within_days", {"not_received": {"within_days": 1.5}}),
    ("segment.clicked.within_days", {"clicked": {"within_days": 10**9}}),
    ("segment.joined_after", {"joined_after": "2025-02-30"}),
    ("segment.joined_before", {"joined_before": "yesterday"}),
    ("segment.joined_before", {"joined_before": 20250101}),
    # a campaign id that names no campaign
    ("segment.not_opened.campaigns", {"not_opened": {"campaigns": [424242]}}),
]


@pytest.mark.parametrize(("field", "segment"), HOSTILE_SEGMENTS)
def test_malformed_segments_are_refused_naming_the_part(
    client: FlaskClient, api_token: Headers, field: str, segment: Any,
) -> None:
    campaigner = api_token("campaigner")
    answer = post(client, campaigner, {"name": "x", "segment": segment})
    assert answer.status_code == 422, answer.text
    assert field in answer.get_json()["errors"], answer.get_json()
    assert saved_count() == 0
    # the same refusal on a campaign, created or edited
    made = client.post("/api/v1/campaigns", headers=campaigner, json={
        "name": "x", "kind": "alert", "subject": "s", "body": "b", "lists": ["newsletter"],
        "segment": segment})
    assert made.status_code == 422 and field in made.get_json()["errors"], made.text
    cid = create(client, campaigner)["id"]
    edited = client.patch(f"/api/v1/campaigns/{cid}", headers=campaigner,
                          json={"segment": segment})
    assert edited.status_code == 422 and field in edited.get_json()["errors"], edited.text
    assert get(client, campaigner, cid)["segment"] == {}


def test_deeply_nested_segment_is_refused_not_a_server_error(
    client: FlaskClient, api_token: Headers,
) -> None:
    answer = post(client, api_token("campaigner"), {"name": "x",
                                                    "segment": {"attributes": DEEP}})
    assert answer.status_code in (400, 422), answer.text
    assert saved_count() == 0


def test_count_is_over_every_confirmed_subscriber(
    client: FlaskClient, api_token: Headers,
) -> None:
    subscribers(3, state="NY")
    subscribers(2, prefix="alerts", state="NY", list_slug="action-alerts")
    subscribers(1, prefix="both", state="NY", list_slug="action-alerts")
    subscribers(1, prefix="both", state="NY")  # on both lists: counted once
    subscribers(4, state="CA", prefix="ca")
    tagged = subscribers(1, prefix="tagged", state="NY")
    db.session().add(SubscriberTag(subscriber_id=tagged[0], tag="volunteer"))
    db.session().commit()
    campaigner = api_token("campaigner")
    sid = post(client, campaigner, {"name": "NY", "segment": {"states": ["NY"]}}).get_json()["id"]
    assert client.get(f"/api/v1/segments/{sid}", headers=api_token("viewer")
                      ).get_json()["count"] == 7
    client.patch(f"/api/v1/segments/{sid}", headers=campaigner,
                 json={"segment": {"states": ["NY"], "tags_any": ["volunteer"]}})
    assert client.get(f"/api/v1/segments/{sid}", headers=campaigner).get_json()["count"] == 1


def test_campaign_follows_its_saved_segment_until_the_freeze_copies_it(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None],
    sink: SinkServer,
) -> None:
    ny = set(subscribers(3, prefix="ny", state="NY"))
    subscribers(2, prefix="ca", state="CA")
    tx = set(subscribers(2, prefix="tx", state="TX"))
    campaigner = api_token("campaigner")
    sid = post(client, campaigner, {"name": "NY", "segment": {"states": ["NY"]}}).get_json()["id"]
    both = client.post("/api/v1/campaigns", headers=campaigner, json={
        "name": "x", "kind": "alert", "subject": "s", "body": "b", "lists": ["newsletter"],
        "segment": {"states": ["CA"]}, "segment_id": sid})
    assert both.status_code == 422 and "segment_id" in both.get_json()["errors"]
    unknown = client.post("/api/v1/campaigns", headers=campaigner, json={
        "name": "x", "kind": "alert", "subject": "s", "body": "b", "lists": ["newsletter"],
        "segment_id": 999999})
    assert unknown.status_code == 422 and "segment_id" in unknown.get_json()["errors"]

    cid = create(client, campaigner, segment_id=sid)["id"]
    shown = get(client, campaigner, cid)
    assert (shown["segment_id"], shown["segment"], shown["segment_frozen"]) == (
        sid, {"states": ["NY"]}, False)
    assert client.get(f"/api/v1/campaigns/{cid}/audience", headers=campaigner
                      ).get_json() == {"count": 3}
    # an edit of the saved segment moves the draft with it
    client.patch(f"/api/v1/segments/{sid}", headers=campaigner,
                 json={"segment": {"states": ["NY", "TX"]}})
    assert get(client, campaigner, cid)["segment"] == {"states": ["NY", "TX"]}
    assert client.get(f"/api/v1/campaigns/{cid}/audience", headers=campaigner
                      ).get_json() == {"count": 5}
    # in use by a draft: deleting it is refused
    refused = client.delete(f"/api/v1/segments/{sid}", headers=campaigner)
    assert refused.status_code == 409 and str(cid) in refused.text

    assert client.post(f"/api/v1/campaigns/{cid}/send", headers=campaigner,
                       json={}).status_code == 202
    run_jobs()
    db.session().rollback()
    sent_to = set(db.session().scalars(select(Delivery.subscriber_id)
                                       .where(Delivery.campaign_id == cid)))
    assert sent_to == ny | tx
    assert len(sink.messages()) == 5
    # the campaign keeps the copy it was frozen with, whatever becomes of the segment
    client.patch(f"/api/v1/segments/{sid}", headers=campaigner,
                 json={"segment": {"states": ["CA"]}})
    shown = get(client, campaigner, cid)
    assert (shown["segment_id"], shown["segment"], shown["segment_frozen"]) == (
        sid, {"states": ["NY", "TX"]}, True)
    assert client.delete(f"/api/v1/segments/{sid}", headers=campaigner).status_code == 204
    shown = get(client, campaigner, cid)
    assert (shown["segment_id"], shown["segment"]) == (None, {"states": ["NY", "TX"]})


def test_own_segment_replaces_the_saved_one_and_back(
    client: FlaskClient, api_token: Headers,
) -> None:
    campaigner = api_token("campaigner")
    sid = post(client, campaigner, {"name": "NY", "segment": {"states": ["NY"]}}).get_json()["id"]
    cid = create(client, campaigner, segment={"locales": ["es"]})["id"]
    patched = client.patch(f"/api/v1/campaigns/{cid}", headers=campaigner,
                           json={"segment_id": sid}).get_json()
    assert (patched["segment_id"], patched["segment"]) == (sid, {"states": ["NY"]})
    patched = client.patch(f"/api/v1/campaigns/{cid}", headers=campaigner,
                           json={"segment": {"tags_none": ["press"]}}).get_json()
    assert (patched["segment_id"], patched["segment"]) == (None, {"tags_none": ["press"]})
    assert client.delete(f"/api/v1/segments/{sid}", headers=campaigner).status_code == 204
    assert db.session().scalar(select(func.count()).select_from(Subscriber)) == 0
