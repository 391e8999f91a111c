"""Local-hour delivery: one wall-clock time in every recipient's own time zone."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from service import db
from service.campaigns.localtime import (
    BadLocalTime,
    check_window,
    due_at,
    instant,
    parse_local,
    resolve_zone,
)
from service.campaigns.recovery import recover, watch
from service.db import utcnow
from service.models import Batch, Delivery, Subscriber
from tests.factories import subscribers

from .api_calls import create, get, to

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """Batches of 2; recipients of an unknown zone get Denver's hour."""
    app = make_app(campaign_batch_size=2, campaign_lease_seconds=2,
                   default_timezone="America/Denver")
    with app.app_context():
        yield app

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
         "America/Los_Angeles", "Pacific/Honolulu"]


# ---------------------------------------------------------------- the pure computation


@pytest.mark.parametrize(("wall", "expected"), [
    # summer: daylight time everywhere but Phoenix and Honolulu
    ("2027-07-14T09:00", ["13:00", "14:00", "15:00", "16:00", "16:00", "19:00"]),
    # winter: standard time everywhere
    ("2027-01-12T09:00", ["14:00", "15:00", "16:00", "16:00", "17:00", "19:00"]),
])
def test_the_same_wall_time_in_six_us_zones(wall: str, expected: list[str]) -> None:
    got = [instant(parse_local(wall), ZoneInfo(z)) for z in ZONES]
    day = wall[:10]
    assert [g.isoformat() for g in got] == [f"{day}T{hm}:00+00:00" for hm in expected]


def test_clock_changes_skipped_and_repeated_hours() -> None:
    ny = ZoneInfo("America/New_York")
    # 02:30 does not happen on 14 March 2027 (02:00 EST → 03:00 EDT): read with the offset
    # before the change, so it is sent at 03:30 EDT = 07:30 UTC.
    assert instant(parse_local("2027-03-14T02:30"), ny) == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    # 01:30 happens twice on 7 November 2027: the first time (EDT, fold=0) = 05:30 UTC.
    assert instant(parse_local("2027-11-07T01:30"), ny) == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)
    # Phoenix keeps no daylight time: the same offset on both days.
    phx = ZoneInfo("America/Phoenix")
    assert instant(parse_local("2027-03-14T02:30"), phx) == datetime(2027, 3, 14, 9, 30, tzinfo=UTC)


def test_past_moments_go_at_once_and_unknown_zones_use_the_default() -> None:
    now = datetime(2027, 7, 14, 15, 30, tzinfo=UTC)  # 11:30 in New York, 08:30 in LA
    wall = parse_local("2027-07-14T09:00")
    assert due_at(wall, "America/New_York", "America/Los_Angeles", now) is None
    assert due_at(wall, "America/Los_Angeles", "America/New_York", now) == datetime(
        2027, 7, 14, 16, 0, tzinfo=UTC)
    for unknown in ("", "Mars/Olympus_Mons", "../../etc/passwd", "America/New_York\u202e",
                    "x" * 500, "/etc/localtime"):
        assert resolve_zone(unknown, "America/Chicago") == ZoneInfo("America/Chicago")
        assert due_at(wall, unknown, "America/Los_Angeles", now) == datetime(
            2027, 7, 14, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [
    "2027-07-14 09:00", "2027-07-14T09:00:00", "2027-07-14T9:00", "2027-13-01T09:00",
    "2027-02-30T09:00", "2027-07-14T24:00", "２０２７-07-14T09:00", "2027-07-14T09:00\u202e",
    "2027-07-14T09:00Z", "", " 2027-07-14T09:00", 20270714, None, ["2027-07-14T09:00"],
    {"at": "2027-07-14T09:00"}, "9" * 100_000,
])
def test_only_exact_local_date_times_parse(value: Any) -> None:
    with pytest.raises(BadLocalTime):
        parse_local(value)


def test_the_window_of_a_local_hour_send() -> None:
    now = datetime(2027, 7, 1, 12, 0, tzinfo=UTC)
    check_window(parse_local("2027-07-15T11:59"), now)  # 14 days ahead
    check_window(parse_local("2027-06-30T12:01"), now)  # still ahead somewhere (UTC+14)
    with pytest.raises(BadLocalTime, match="14 days"):
        check_window(parse_local("2027-07-15T12:01"), now)
    with pytest.raises(BadLocalTime, match="passed"):
        check_window(parse_local("2027-06-30T11:59"), now)


# ---------------------------------------------------------------- end to end


def _people(zones: dict[str, int]) -> dict[str, str]:
    """{address: zone} of subscribers on "newsletter", `n` per zone."""
    address_zone: dict[str, str] = {}
    session = db.session()
    for zone_name, n in zones.items():
        prefix = "z" + "".join(ch for ch in zone_name.lower() if ch.isalnum())[:20] + "-"
        ids = subscribers(n, prefix=prefix)
        session.execute(update(Subscriber).where(Subscriber.id.in_(ids))
                        .values(timezone=zone_name))
        address_zone.update({f"{prefix}{i}@example.com": zone_name for i in range(n)})
    session.commit()
    return address_zone


def _wall_hour_ago() -> tuple[str, datetime]:
    """A wall time an hour before now as read in UTC: already past in London and Tokyo,
    still ahead everywhere in the Americas."""
    wall = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    return wall.strftime("%Y-%m-%dT%H:%M"), wall.replace(tzinfo=None)


def _expected(wall: datetime, zone_of: dict[str, str], default: str,
              started: datetime) -> list[dict[str, Any]]:
    """The schedule, worked out with the standard library alone."""
    by_moment: Counter[datetime] = Counter()
    for zone_name in zone_of.values():
        try:
            tz = ZoneInfo(zone_name)
        except Exception:  # noqa: BLE001 - "" and made-up names
            tz = ZoneInfo(default)
        at = wall.replace(tzinfo=tz).astimezone(UTC)
        by_moment[at if at > started else started] += 1
    return [{"at": at.isoformat(), "recipients": n} for at, n in sorted(by_moment.items())]


def _release_all_now() -> None:
    """The clock moves on: every zone's moment has come."""
    db.session().execute(update(Batch).where(Batch.not_before.is_not(None))
                         .values(not_before=utcnow() - timedelta(seconds=1)))
    db.session().commit()


def test_each_zone_at_its_hour_the_past_at_once_and_one_mail_each(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
) -> None:
    if True:
        zone_of = _people({"America/New_York": 3, "America/Chicago": 2, "America/Denver": 1,
                           "America/Phoenix": 2, "America/Los_Angeles": 1,
                           "Pacific/Honolulu": 1, "Europe/London": 2, "Asia/Tokyo": 1,
                           "": 2, "Mars/Olympus_Mons": 1})
        staff = api_token("campaigner")
        cid = create(client, staff)["id"]
        text, wall = _wall_hour_ago()
        answer = client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at_local": text},
                             headers=staff)
        assert answer.status_code == 202, answer.get_json()
        run_jobs(due_within=60)  # the start, then whatever is due (no zone's hour is near)
        data = get(client, staff, cid)
        assert data["status"] == "sending" and data["send_at_local"] == text
        started = datetime.fromisoformat(data["started_at"])
        assert data["schedule"] == _expected(wall, zone_of, "America/Denver", started)
        # London and Tokyo got it at once; nobody else yet.
        assert sorted(to(m) for m in sink.messages()) == sorted(
            a for a, z in zone_of.items() if z in ("Europe/London", "Asia/Tokyo"))
        # No batch mixes zones.
        zones_per_batch = db.session().execute(
            select(Batch.id, Batch.timezone, Batch.size).where(Batch.campaign_id == cid)).all()
        assert sum(size for _, _, size in zones_per_batch) == len(zone_of)
        assert Counter(tz for _, tz, _ in zones_per_batch)["America/New_York"] == 2
        assert sorted(db.session().scalars(select(Batch.seq).where(Batch.campaign_id == cid))) \
            == list(range(len(zones_per_batch)))
        members = db.session().execute(
            select(Delivery.batch_id, Subscriber.timezone)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.campaign_id == cid)).all()
        batch_zone = {batch_id: tz for batch_id, tz, _ in zones_per_batch}
        assert all(batch_zone[batch_id] == tz for batch_id, tz in members)

        _release_all_now()
        run_jobs(due_within=24 * 3600)
        data = get(client, staff, cid)
        assert data["status"] == "sent", data
        assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: len(zone_of)}
        assert set(to(m) for m in sink.messages()) == set(zone_of)


def test_a_zone_whose_scheduled_job_is_lost_still_goes_when_due(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
) -> None:
    if True:
        zone_of = _people({"America/Chicago": 3, "Pacific/Honolulu": 2})
        staff = api_token("campaigner")
        cid = create(client, staff)["id"]
        text, _ = _wall_hour_ago()
        client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at_local": text},
                    headers=staff)
        run_jobs()
        assert sink.messages() == [] and get(client, staff, cid)["status"] == "sending"
        # Jobs that fire early (a worker's clock ahead) claim nothing.
        run_jobs(due_within=24 * 3600)
        assert sink.messages() == [] and get(client, staff, cid)["counts"]["queued"] == 5
        tq = app.extensions["queue"]
        # Every scheduled job is lost (Redis restarted empty; the embedded mode restarted).
        if tq.redis is not None:
            tq.redis.flushdb()
        else:
            from tests.conftest import stop_local_jobs

            stop_local_jobs(app)
        # Not due yet: the watch leaves the batches alone.
        assert watch()["lost_jobs"] == 0
        time.sleep(1.1)
        assert watch()["lost_jobs"] == 0
        _release_all_now()
        if tq.redis is not None:
            watch()
            time.sleep(1.1)
            assert watch()["lost_jobs"] == 3  # two batches of Chicago, one of Honolulu
        else:
            time.sleep(2.1)  # a lease without activity: the full pass restarts it
            assert recover()["restarted_campaigns"] == 1
        run_jobs()
        assert get(client, staff, cid)["status"] == "sent"
        assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: len(zone_of)}


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_and_cancel_stop_every_zone(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
    action: str,
) -> None:
    zone_of = _people({"America/New_York": 6, "America/Los_Angeles": 4, "Pacific/Honolulu": 1})
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    text, _ = _wall_hour_ago()
    client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at_local": text}, headers=staff)
    run_jobs()
    assert len(get(client, staff, cid)["schedule"]) == 3
    assert client.post(f"/api/v1/campaigns/{cid}/{action}", headers=staff).status_code == 202
    _release_all_now()
    run_jobs(due_within=24 * 3600)
    recover()
    run_jobs(due_within=24 * 3600)
    assert sink.messages() == []
    data = get(client, staff, cid)
    assert data["status"] == ("paused" if action == "pause" else "cancelled")
    assert data["counts"]["queued"] == len(zone_of)
    if action == "pause":
        assert client.post(f"/api/v1/campaigns/{cid}/resume", headers=staff).status_code == 202
        run_jobs(due_within=24 * 3600)
        assert get(client, staff, cid)["status"] == "sent"
        assert Counter(Counter(to(m) for m in sink.messages()).values()) == {1: len(zone_of)}


def test_a_campaign_without_a_local_hour_has_no_schedule(
    app: Flask, client: FlaskClient, api_token: Headers, run_jobs: Callable[..., None], sink,
) -> None:
    _people({"America/Chicago": 3})
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    client.post(f"/api/v1/campaigns/{cid}/send", headers=staff)
    run_jobs()
    data = get(client, staff, cid)
    assert data["status"] == "sent" and data["schedule"] == [] and data["send_at_local"] is None
    assert set(db.session().scalars(select(Batch.timezone).where(Batch.campaign_id == cid))) \
        == {""}


@pytest.mark.parametrize("body", [
    {"send_at_local": "2027-07-14 09:00"},
    {"send_at_local": "tomorrow 9am"},
    {"send_at_local": "2027-02-30T09:00"},
    {"send_at_local": "2027-07-14T09:00\u202e"},
    {"send_at_local": "\x00"},
    {"send_at_local": 1},
    {"send_at_local": True},
    {"send_at_local": ["2027-07-14T09:00"]},
    {"send_at_local": {"a": {"b": {"c": 1}}}},
    {"send_at_local": "2" * 50_000},
    {"send_at_local": "2001-01-01T09:00"},
    {"send_at_local": "2999-01-01T09:00"},
    {"send_at_local": "LATER", "send_at": "2027-06-01T00:00:00Z"},
])
def test_malformed_local_hours_are_refused_and_nothing_changes(
    app: Flask, client: FlaskClient, api_token: Headers, body: dict[str, Any],
) -> None:
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    if body.get("send_at_local") == "LATER":
        body = {**body, "send_at_local": (datetime.now(UTC) + timedelta(days=2))
                .strftime("%Y-%m-%dT%H:%M")}
    answer = client.post(f"/api/v1/campaigns/{cid}/send", json=body, headers=staff)
    assert answer.status_code == 422, answer.get_json()
    assert "send_at_local" in str(answer.get_json()["errors"])
    data = get(client, staff, cid)
    assert data["status"] == "draft" and data["send_at_local"] is None


def test_a_local_hour_more_than_fourteen_days_ahead_is_refused(
    app: Flask, client: FlaskClient, api_token: Headers,
) -> None:
    staff = api_token("campaigner")
    cid = create(client, staff)["id"]
    far = (datetime.now(UTC) + timedelta(days=15)).strftime("%Y-%m-%dT%H:%M")
    answer = client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at_local": far},
                         headers=staff)
    assert answer.status_code == 422
    assert "14 days" in answer.get_json()["errors"]["send_at_local"][0]


def test_a_campaign_with_a_subject_test_cannot_go_at_a_local_hour(
    client: FlaskClient, api_token: Callable[[str], dict[str, str]],
) -> None:
    """The test's sample goes at once and its figures decide; zones spread over hours would
    compare different times of day, so the combination is refused and nothing starts."""
    headers = api_token("campaigner")
    created = client.post("/api/v1/campaigns", headers=headers, json={
        "name": "AB", "kind": "newsletter", "subject": "Hi", "body": "Hello",
        "lists": ["newsletter"], "ab_test": {"subjects": ["A", "B"], "sample_percent": 20,
                                             "metric": "unique_opens", "wait_minutes": 5}})
    assert created.status_code == 201, created.get_json()
    campaign_id = created.get_json()["id"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    answer = client.post(f"/api/v1/campaigns/{campaign_id}/send", headers=headers,
                         json={"send_at_local": tomorrow})
    assert answer.status_code == 422, answer.get_json()
    assert "subject test" in answer.get_json()["errors"]["send_at_local"][0]
    assert client.get(f"/api/v1/campaigns/{campaign_id}",
                      headers=headers).get_json()["status"] == "draft"
