"""The campaign state machine, without a database: which action moves which state where,
what is refused, and what a move writes.

`transition` is a conditional UPDATE; here `OneCampaign` stands in for the table and
applies the statement the way the database would (the row moves only if its status is in
the statement's own `status IN (…)`), so the rules tested are the ones the SQL carries.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.orm import configure_mappers

from service.campaigns.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    require_transition,
    transition,
)
from service.models import AuditRecord, Campaign, CampaignStatus

S = CampaignStatus

# The diagram of the lifecycle module, written out: (action, from) → to.
LEGAL: dict[tuple[str, CampaignStatus], CampaignStatus] = {
    ("schedule", S.draft): S.scheduled,
    ("unschedule", S.scheduled): S.draft,
    ("start", S.scheduled): S.sending,
    ("pause", S.sending): S.paused,
    ("resume", S.paused): S.sending,
    ("finish", S.sending): S.sent,
    ("cancel", S.draft): S.cancelled,
    ("cancel", S.scheduled): S.cancelled,
    ("cancel", S.sending): S.cancelled,
    ("cancel", S.paused): S.cancelled,
    ("fail", S.scheduled): S.failed,
    ("fail", S.sending): S.failed,
    ("fail", S.paused): S.failed,
}
ACTIONS = sorted({action for action, _ in LEGAL})
EVERY_MOVE = list(itertools.product(ACTIONS, list(CampaignStatus)))


@pytest.fixture(scope="module", autouse=True)
def _mappers() -> None:
    """The ORM's one-time set-up (some 30 ms), paid once rather than by the first test."""
    configure_mappers()


class OneCampaign:
    """A session over a one-row campaigns table (id 7)."""

    def __init__(self, status: CampaignStatus) -> None:
        self.row: dict[str, Any] = {"id": 7, "status": status}
        self.added: list[Any] = []

    def execute(self, statement: Any) -> Any:
        params = statement.compile().params
        (allowed,) = [v for v in params.values() if isinstance(v, list)]
        hit = params["id_1"] == self.row["id"] and self.row["status"] in allowed
        if hit:
            self.row.update({k: v for k, v in params.items() if k in Campaign.__table__.c})
        return SimpleNamespace(rowcount=int(hit))

    def add(self, obj: Any) -> None:
        self.added.append(obj)

    def refresh(self, campaign: Campaign) -> None:
        campaign.status = self.row["status"]


def test_the_table_is_the_diagram() -> None:
    assert sorted(TRANSITIONS) == ACTIONS
    table = {(action, source): target for action, (sources, target) in TRANSITIONS.items()
             for source in sources}
    assert table == LEGAL


@pytest.mark.parametrize("action, current", EVERY_MOVE, ids=lambda v: getattr(v, "value", v))
def test_every_action_from_every_state(action: str, current: CampaignStatus) -> None:
    session = OneCampaign(current)
    moved = transition(session, 7, action, "staff:ana@example.org")  # type: ignore[arg-type]
    expected = LEGAL.get((action, current))
    assert moved is (expected is not None)
    assert session.row["status"] == (expected or current)
    if expected is None:
        assert session.added == []  # a refused action leaves no audit record
    else:
        [record] = session.added
        assert isinstance(record, AuditRecord)
        assert (record.action, record.object_type, record.object_id, record.actor) == (
            f"campaign.{action}", "campaign", "7", "staff:ana@example.org")


@pytest.mark.parametrize("final", [S.sent, S.cancelled, S.failed])
def test_nothing_leaves_a_final_state(final: CampaignStatus) -> None:
    for action in ACTIONS:
        session = OneCampaign(final)
        assert not transition(session, 7, action, "system")  # type: ignore[arg-type]
        assert session.row["status"] == final


def test_only_a_draft_can_be_scheduled_and_only_while_sending_can_it_finish() -> None:
    assert [s for s in CampaignStatus if ("schedule", s) in LEGAL] == [S.draft]
    assert [s for s in CampaignStatus if ("finish", s) in LEGAL] == [S.sending]
    assert ("resume", S.sending) not in LEGAL and ("pause", S.paused) not in LEGAL


def test_start_stamps_started_at_and_the_ends_stamp_finished_at() -> None:
    for action, current in [("start", S.scheduled), ("pause", S.sending),
                            ("resume", S.paused), ("schedule", S.draft)]:
        session = OneCampaign(current)
        transition(session, 7, action, "system")  # type: ignore[arg-type]
        assert ("started_at" in session.row) is (action == "start"), action
        assert "finished_at" not in session.row, action
    for action, current in [("finish", S.sending), ("cancel", S.draft), ("fail", S.paused)]:
        session = OneCampaign(current)
        transition(session, 7, action, "system")  # type: ignore[arg-type]
        assert session.row["finished_at"] is not None, action
        assert "started_at" not in session.row, action


def test_given_values_win_and_the_reason_is_kept() -> None:
    session = OneCampaign(S.sending)
    assert transition(session, 7, "fail", "system", reason="x" * 3000,  # type: ignore[arg-type]
                      values={"finished_at": "then"})
    assert session.row["finished_at"] == "then"
    assert session.row["status_reason"] == "x" * 2000
    assert session.added[0].detail == {"reason": "x" * 3000}
    quiet = OneCampaign(S.sending)
    transition(quiet, 7, "pause", "system")  # type: ignore[arg-type]
    assert quiet.row["status_reason"] == "" and quiet.added[0].detail == {}


def test_another_campaign_is_not_moved() -> None:
    session = OneCampaign(S.draft)
    assert not transition(session, 8, "schedule", "system")  # type: ignore[arg-type]
    assert session.row["status"] == S.draft


def test_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        transition(OneCampaign(S.draft), 7, "publish", "system")  # type: ignore[arg-type]


def test_require_transition_raises_with_the_state_it_found() -> None:
    session = OneCampaign(S.paused)
    campaign = Campaign(id=7, status=S.sending)  # stale: someone paused it meanwhile
    with pytest.raises(IllegalTransition) as raised:
        require_transition(session, campaign, "pause", "staff:bo@example.org")  # type: ignore[arg-type]
    assert (raised.value.action, raised.value.current) == ("pause", S.paused)
    assert str(raised.value) == "Cannot pause a campaign that is paused."
    assert campaign.status == S.paused and session.added == []


def test_require_transition_moves_and_refreshes() -> None:
    session = OneCampaign(S.draft)
    campaign = Campaign(id=7, status=S.draft)
    require_transition(session, campaign, "schedule", "staff:bo@example.org",  # type: ignore[arg-type]
                       values={"send_at": None})
    assert campaign.status == S.scheduled
    assert [r.action for r in session.added] == ["campaign.schedule"]
