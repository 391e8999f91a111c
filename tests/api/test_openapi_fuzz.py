"""Schemathesis over the whole staff API: every operation of the OpenAPI document, with an
admin's token (the highest role), never answers a server error and stores nothing invalid.

Each operation gets schema-valid and deliberately invalid cases (wrong types, missing and
extra fields); path ids are drawn mostly among the seeded rows so that the cases reach
real campaigns, subscribers, imports and suppressions instead of stopping at 404.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from sqlalchemy import select

from service import db
from service.campaigns.drafts import CampaignIn, stored_template_errors
from service.models import Campaign, Subscriber
from service.subscribers import normalise_email
from tests import factories

EXAMPLES_PER_OPERATION = 30
# Ids the seeded rows have (and the ones the fuzzing itself creates next).
KNOWN_IDS = st.integers(min_value=1, max_value=6)


# About 1,750 cases (every operation, 60 each): near two minutes on a loaded 2-core machine,
# past the suite's default of 120 s.
@pytest.mark.timeout(300)
def test_no_operation_of_the_api_answers_a_server_error(
    app: Flask, client: FlaskClient, api_token: Callable[[str], dict[str, str]],
    run_jobs: Callable[[], None],
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a server error is an answer to count
    headers = api_token("admin")
    _seed(client, headers)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    seen: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            stream = st.tuples(operation.as_strategy(generation_mode=mode),
                               st.one_of(st.none(), KNOWN_IDS), st.booleans(),
                               ).map(_realistic)

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=stream)
            def check(case: schemathesis.Case) -> None:
                try:
                    with app.app_context():  # a request of its own, as in production
                        response = case.call(headers=headers)
                except Exception as exc:  # noqa: BLE001 - an exception is a server error
                    failures.append(f"{case.method} {case.formatted_path} {case.query} "
                                    f"{case.body!r:.300} -> {type(exc).__name__}: {exc}")
                    return
                seen[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} "
                                    f"{case.path_parameters} {case.query} {case.body!r:.300}"
                                    f" -> {response.status_code} {response.text[:300]}")

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid: an operation without input
                assert mode == GenerationMode.NEGATIVE
    elapsed = time.monotonic() - started
    print(f"{sum(seen.values())} cases in {elapsed:.1f}s; status codes: {dict(seen)}")
    assert not failures, "\n".join(failures[:20])
    assert seen[200] and seen[201] and seen[202] and seen[422] and seen[404]
    run_jobs()
    _nothing_invalid_stored()


def _realistic(parts: tuple[schemathesis.Case, int | None, bool]) -> schemathesis.Case:
    """Often an existing id in the path, and existing lists in a body that names lists (the
    schema cannot know either, so schema-valid cases would mostly stop at 404 or 422)."""
    case, known, real_lists = parts
    if known is not None and case.path_parameters:
        case.path_parameters = {name: known for name in case.path_parameters}
    if real_lists and isinstance(case.body, dict) and "lists" in case.body:
        case.body = {**case.body, "lists": ["newsletter"]}
    return case


def _seed(client: FlaskClient, headers: dict[str, str]) -> None:
    factories.subscribers(4)
    for n in range(3):
        answer = client.post("/api/v1/campaigns", headers=headers, json={
            "name": f"Seed {n}", "kind": "newsletter", "subject": "Hi {{ first_name }}",
            "body": "Hello", "lists": ["newsletter"]})
        assert answer.status_code == 201
    factories.suppression("gone@example.org")


def _nothing_invalid_stored() -> None:
    session = db.session()
    session.rollback()
    horizon = datetime.now(UTC) + timedelta(days=366)
    for campaign in session.scalars(select(Campaign)):
        assert not stored_template_errors(campaign), campaign.id
        assert campaign.name and campaign.subject and campaign.body, campaign.id
        assert campaign.send_at is None or campaign.send_at <= horizon, campaign.send_at
        stored: dict[str, Any] = {
            "name": campaign.name, "kind": campaign.kind.value, "subject": campaign.subject,
            "preheader": campaign.preheader, "body": campaign.body,
            "format": campaign.format.value, "lists": [ml.slug for ml in campaign.lists],
            "segment": campaign.segment, "variants": campaign.variants,
            "source_code": campaign.source_code}
        CampaignIn().load(stored)  # what is stored passes the API's own validation
    for subscriber in session.scalars(select(Subscriber)):
        if subscriber.email:
            assert normalise_email(subscriber.email) == subscriber.email, subscriber.email
