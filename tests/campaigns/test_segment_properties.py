"""Segments, on SQLite and PostgreSQL, against a brute-force evaluation in Python.

Any valid segment over a small random population (places, attributes, tags, join dates,
subscriptions, suppressions, deliveries, opens and clicks of three sent campaigns)
selects, through the audience query the count, the freeze and the live count use,
exactly the people a plain Python reading of the segment's rules selects. And the parser
answers any JSON with a segment or a SegmentError naming the parts, never anything else.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from service import db
from service.campaigns import segments
from service.campaigns.audience import audience_query, count_audience
from service.models import (
    Campaign,
    CampaignEventUnique,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    MailingList,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

NOW = datetime.now(UTC).replace(microsecond=0)
BASE_DAY = date(2025, 1, 1)
STATES = ["NY", "CA"]
COUNTIES = ["Kings County", "Queens County", ""]
POSTALS = ["11201", "11215", "94110", ""]
KEYS = ["cd", "team"]
VALUES = ["NY-10", "NY-12", "5", ""]
TAGS = ["volunteer", "donor", "press"]
LISTS = ["newsletter", "action-alerts"]
CAMPAIGNS = 3
DAYS_AGO = [1, 5, 20, 60]

QUICK = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate],
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Person:
    state: str
    county: str
    postal: str
    locale: str
    status: SubscriberStatus
    attributes: dict[str, Any]
    tags: set[str]
    joined: int  # days after BASE_DAY
    lists: dict[str, SubscriptionStatus]
    suppressed: bool
    # campaign index -> days ago it was sent to them (None: queued, never sent)
    deliveries: dict[int, int | None] = field(default_factory=dict)
    events: set[tuple[int, str]] = field(default_factory=set)  # (campaign index, event)


people_st = st.lists(st.builds(
    Person,
    state=st.sampled_from(STATES), county=st.sampled_from(COUNTIES),
    postal=st.sampled_from(POSTALS), locale=st.sampled_from(["en", "es"]),
    status=st.sampled_from([SubscriberStatus.active] * 7 + [SubscriberStatus.bounced]),
    attributes=st.dictionaries(st.sampled_from(KEYS),
                               st.one_of(st.sampled_from(VALUES), st.none(), st.just(5)),
                               max_size=2),
    tags=st.sets(st.sampled_from(TAGS), max_size=2),
    joined=st.integers(0, 30),
    lists=st.dictionaries(st.sampled_from(LISTS),
                          st.sampled_from([SubscriptionStatus.confirmed] * 3
                                          + [SubscriptionStatus.pending]),
                          min_size=1, max_size=2),
    suppressed=st.sampled_from([False] * 7 + [True]),
    deliveries=st.dictionaries(st.integers(0, CAMPAIGNS - 1),
                               st.one_of(st.none(), st.sampled_from(DAYS_AGO)), max_size=3),
    events=st.sets(st.tuples(st.integers(0, CAMPAIGNS - 1), st.sampled_from(["open", "click"])),
                   max_size=4),
), min_size=4, max_size=14)


def _sub_list(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=1, max_size=3, unique=True)


engagement_st = st.one_of(
    st.fixed_dictionaries({"campaigns": _sub_list(st.integers(0, CAMPAIGNS - 1))}),
    st.fixed_dictionaries({"within_days": st.sampled_from([3, 10, 30, 90])}),
)

PART_ST: dict[str, st.SearchStrategy[Any]] = {
    "states": _sub_list(st.sampled_from(STATES)),
    "postal_prefixes": _sub_list(st.sampled_from(["11", "112", "94", "1121"])),
    "locales": _sub_list(st.sampled_from(["en", "es"])),
    "counties": _sub_list(st.sampled_from(["Kings County, NY", "Queens County, NY",
                                           "Kings County, CA"])),
    "attributes": st.dictionaries(st.sampled_from(KEYS),
                                  st.one_of(st.none(), _sub_list(st.sampled_from(VALUES[:3]))),
                                  min_size=1, max_size=2),
    "tags_any": _sub_list(st.sampled_from(TAGS)),
    "tags_none": _sub_list(st.sampled_from(TAGS)),
    **{name: engagement_st for name in segments.ENGAGEMENT_PARTS},
    "joined_after": st.integers(0, 31).map(lambda d: (BASE_DAY + timedelta(d)).isoformat()),
    "joined_before": st.integers(0, 31).map(lambda d: (BASE_DAY + timedelta(d)).isoformat()),
}
# One to three parts: enough to combine filters, few enough that most segments select
# some people and leave out others (an empty answer on both sides proves little).
segment_st = st.tuples(st.permutations(sorted(PART_ST)), st.integers(1, 3)).flatmap(
    lambda drawn: st.fixed_dictionaries({name: PART_ST[name] for name in drawn[0][:drawn[1]]}))


# ------------------------------------------------------------------ the brute force


def _engaged(person: Person, pid: int, name: str, rule: dict[str, Any]) -> bool:
    what = name.removeprefix("not_")
    if what == "received":
        if "campaigns" in rule:
            hit = any(person.deliveries.get(c, None) is not None for c in rule["campaigns"])
        else:
            hit = any(ago is not None and ago <= rule["within_days"]
                      for ago in person.deliveries.values())
    else:
        event = {"opened": "open", "clicked": "click"}[what]
        if "campaigns" in rule:
            hit = any((c, event) in person.events for c in rule["campaigns"])
        else:
            hit = any(ago is not None and ago <= rule["within_days"]
                      and (c, event) in person.events
                      for c, ago in person.deliveries.items())
    del pid
    return not hit if name.startswith("not_") else hit


def expected(people: list[Person], ids: list[int], lists: list[str],
             segment: dict[str, Any]) -> set[int]:
    out = set()
    for person, pid in zip(people, ids, strict=True):
        if person.status != SubscriberStatus.active or person.suppressed:
            continue
        if not any(person.lists.get(slug) == SubscriptionStatus.confirmed for slug in lists):
            continue
        s = segment
        if "states" in s and person.state not in s["states"]:
            continue
        if "postal_prefixes" in s and not any(person.postal.startswith(p)
                                              for p in s["postal_prefixes"]):
            continue
        if "locales" in s and person.locale not in s["locales"]:
            continue
        if "counties" in s and f"{person.county}, {person.state}" not in s["counties"]:
            continue
        if any((person.attributes.get(k) not in (None, "")) if v is None
               else person.attributes.get(k) not in v
               for k, v in s.get("attributes", {}).items()):
            continue
        if "tags_any" in s and not person.tags & set(s["tags_any"]):
            continue
        if "tags_none" in s and person.tags & set(s["tags_none"]):
            continue
        if not all(_engaged(person, pid, name, s[name])
                   for name in segments.ENGAGEMENT_PARTS if name in s):
            continue
        joined = BASE_DAY + timedelta(person.joined)
        if "joined_after" in s and joined < date.fromisoformat(s["joined_after"]):
            continue
        if "joined_before" in s and joined >= date.fromisoformat(s["joined_before"]):
            continue
        out.add(pid)
    return out


# ------------------------------------------------------------------ the database


def _clear() -> None:
    session = db.session()
    session.rollback()
    for model in (CampaignEventUnique, Delivery, SubscriberTag, Subscription, Suppression,
                  Subscriber, Campaign):
        session.execute(delete(model))
    session.commit()


def store(people: list[Person]) -> tuple[list[int], list[int]]:
    """Write the population; (subscriber ids, campaign ids)."""
    _clear()
    session = db.session()
    slugs = {ml.slug: ml.id for ml in session.scalars(select(MailingList))}
    campaigns = []
    for n in range(CAMPAIGNS):
        campaign = Campaign(name=f"c{n}", kind=CampaignKind.newsletter, subject="s", body="b",
                            status=CampaignStatus.sent,
                            started_at=NOW - timedelta(days=max(DAYS_AGO) + 1),
                            finished_at=NOW - timedelta(hours=1) if n else None)
        session.add(campaign)
        campaigns.append(campaign)
    session.flush()
    rows = []
    for i, person in enumerate(people):
        email = f"p{i}@example.org"
        row = Subscriber(
            email=email, email_key=email, state=person.state, county=person.county,
            postal_code=person.postal, locale=person.locale, status=person.status,
            attributes=person.attributes,
            created_at=datetime.combine(BASE_DAY + timedelta(person.joined),
                                        datetime.min.time(), UTC) + timedelta(hours=i % 24),
        )
        session.add(row)
        rows.append(row)
    session.flush()
    for person, row in zip(people, rows, strict=True):
        session.add_all(SubscriberTag(subscriber_id=row.id, tag=t) for t in person.tags)
        session.add_all(Subscription(subscriber_id=row.id, list_id=slugs[slug], status=status)
                        for slug, status in person.lists.items())
        if person.suppressed:
            session.add(Suppression(email=row.email_key, email_hash=row.email_key,
                                    reason="bounce"))
        for c, ago in person.deliveries.items():
            session.add(Delivery(
                campaign_id=campaigns[c].id, subscriber_id=row.id,
                status=DeliveryStatus.queued if ago is None else DeliveryStatus.sent,
                sent_at=None if ago is None else NOW - timedelta(days=ago) + timedelta(hours=2)))
        session.add_all(CampaignEventUnique(campaign_id=campaigns[c].id, event=event,
                                            recipient=str(row.id))
                        for c, event in person.events)
    session.commit()
    return [row.id for row in rows], [c.id for c in campaigns]


def with_ids(segment: dict[str, Any], campaign_ids: list[int]) -> dict[str, Any]:
    """The segment with campaign indexes replaced by the stored campaigns' ids."""
    out = dict(segment)
    for name in segments.ENGAGEMENT_PARTS:
        if "campaigns" in out.get(name, {}):
            out[name] = {"campaigns": [campaign_ids[i] for i in out[name]["campaigns"]]}
    return out


@pytest.mark.slow
def test_sql_audience_equals_the_python_reading(app: Flask) -> None:
    @QUICK
    @given(people=people_st, segment=segment_st,
           lists=st.lists(st.sampled_from(LISTS), min_size=1, max_size=2, unique=True))
    def check(people: list[Person], segment: dict[str, Any], lists: list[str]) -> None:
        seen["examples"] += 1
        pids, cids = store(people)
        real = with_ids(segment, cids)
        parsed = segments.parse(real)
        assert segments.parse(parsed.as_json()) == parsed
        session = db.session()
        list_ids = [ml.id for ml in session.scalars(
            select(MailingList).where(MailingList.slug.in_(lists)))]
        got = set(session.scalars(audience_query(list_ids, parsed.as_json(), now=NOW)))
        want = expected(people, pids, lists, segment)
        assert got == want, (json.dumps(real), people)
        assert count_audience(session, list_ids, parsed.as_json()) == len(want)
        if want and want != expected(people, pids, lists, {}):
            seen["telling"] += 1
            seen.update(f"part:{name}" for name in segment)

    seen: Counter[str] = Counter()
    check()
    # The examples were not trivially empty: a good share select a strict, non-empty part
    # of the lists' people, and every filter takes part in such an example.
    assert seen["telling"] >= seen["examples"] // 4, seen
    assert not [name for name in PART_ST if not seen[f"part:{name}"]], seen


def test_each_filter_alone_selects_someone_and_not_everyone(app: Flask) -> None:
    """The property test's population exercises every filter: a fixed population where
    each filter alone picks a strict, non-empty part (so no filter is silently a no-op)."""
    people = [
        Person("NY", "Kings County", "11201", "en", SubscriberStatus.active,
               {"cd": "NY-10"}, {"volunteer"}, 2, {"newsletter": SubscriptionStatus.confirmed},
               False, {0: 1, 1: 20}, {(0, "open"), (1, "click")}),
        Person("CA", "", "94110", "es", SubscriberStatus.active, {"cd": 5}, set(), 20,
               {"newsletter": SubscriptionStatus.confirmed}, False, {1: None}, set()),
        # on another list only: every filter's OR stays inside its own parentheses
        Person("NY", "Kings County", "11201", "en", SubscriberStatus.active,
               {"cd": "NY-12"}, {"volunteer"}, 2, {"action-alerts": SubscriptionStatus.confirmed},
               False, {0: 1}, {(0, "open")}),
    ]
    pids, cids = store(people)
    session = db.session()
    newsletter = [session.scalars(select(MailingList.id).where(
        MailingList.slug == "newsletter")).one()]
    samples = [
        {"states": ["NY"]}, {"postal_prefixes": ["94"]}, {"locales": ["es"]},
        {"counties": ["Kings County, NY"]}, {"attributes": {"cd": ["NY-10"]}},
        {"attributes": {"cd": None}}, {"attributes": {"cd": ["5"]}}, {"tags_any": ["volunteer"]},
        {"tags_none": ["volunteer"]}, {"opened": {"campaigns": [0]}},
        {"not_opened": {"campaigns": [0]}}, {"clicked": {"within_days": 30}},
        {"not_clicked": {"within_days": 30}}, {"received": {"campaigns": [1]}},
        {"not_received": {"within_days": 3}}, {"joined_after": "2025-01-10"},
        {"joined_before": "2025-01-10"}, {"opened": {"within_days": 3}},
        {"attributes": {"cd": ["NY-10", "NY-12"]}},
        {"attributes": {"cd": ["NY-9", "NY-1", "NY-2", "NY-3", "NY-10", "NY-12"]}},
        {"counties": ["Kings County, NY", "Queens County, NY", "Kings County, CA"]},
        {"tags_any": ["volunteer", "donor"]}, {"postal_prefixes": ["94", "112"]},
    ]
    for sample in samples:
        got = set(session.scalars(audience_query(newsletter, with_ids(sample, cids), now=NOW)))
        want = expected(people, pids, ["newsletter"], sample)
        assert got == want, sample
        if sample not in ({"attributes": {"cd": ["5"]}}, {"attributes": {"cd": None}},
                          {"postal_prefixes": ["94", "112"]}):
            assert len(want) == 1, (sample, want)
    # {"cd": 5} (a number) is not the text "5", and is an attribute
    assert not set(session.scalars(audience_query(newsletter, {"attributes": {"cd": ["5"]}})))
    assert not set(session.scalars(audience_query(newsletter, {"attributes": {"cd": None}})))


# ------------------------------------------------------------------ the parser

json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
part_st = st.sampled_from([*segments.PARTS, "unknown", "within_days", "campaigns"])
near_segment_st = st.dictionaries(part_st, json_st, max_size=4) | json_st | st.fixed_dictionaries(
    {}, optional={name: st.fixed_dictionaries({}, optional={
        "campaigns": json_st, "within_days": json_st}) for name in segments.ENGAGEMENT_PARTS})


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(raw=near_segment_st)
def test_parser_answers_any_json_with_a_segment_or_named_errors(raw: Any) -> None:
    try:
        parsed = segments.parse(raw)
    except segments.SegmentError as exc:
        assert exc.errors and all(isinstance(k, str) and v for k, v in exc.errors.items())
        for key in exc.errors:  # a part, an unknown key as given, or the whole
            assert key.split(".")[0] in (*segments.PARTS, "_segment") or (
                isinstance(raw, dict) and key in raw), key
        return
    assert segments.parse(parsed.as_json()) == parsed
    json.dumps(parsed.as_json())
