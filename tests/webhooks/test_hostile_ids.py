"""Ids in events (our custom args, echoed back) that are not ids: the event is applied as
one without them, and the processing job never fails on it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service import db
from service.models import WebhookBatch, WebhookEventKey

from .events import event


@pytest.mark.parametrize("value", ["²", "٣", str(2**31), 2**31, str(2**63), 2**64, "9" * 5000, -1, True, 1.5])
def test_an_id_that_is_not_one(post_events, run_jobs, value):
    answer = post_events([event("bounce", campaign_id=value, subscriber_id=value,
                                reason="550 no such user")])
    assert answer.status_code == 200 and answer.json["queued"] == 1
    run_jobs()
    session = db.session()
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(WebhookBatch)) == 0
    assert session.scalar(select(func.count()).select_from(WebhookEventKey)) == 1
