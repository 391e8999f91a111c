"""The send-time recheck of a recipient, without a database: who is mailed and who is skipped,
and under which reason (the reason is what the delivery's row and the counts show)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from service.campaigns.sending import Recipient, skip_reason
from service.models import SubscriberStatus
from service.subscribers import email_hasher


def recipient(**changes: Any) -> Recipient:
    """A queued delivery of an active subscriber still confirmed on a campaign list."""
    fields: dict[str, Any] = {
        "id": 1, "subscriber_id": 10, "email": "ana@example.org", "first_name": "Ana",
        "last_name": "Ruiz", "state": "CA", "postal_code": "94110", "locale": "es",
        "status": SubscriberStatus.active, "confirmed": True,
    }
    fields.update(changes)
    return Recipient(**fields)


def test_an_active_confirmed_unsuppressed_recipient_is_mailed() -> None:
    assert skip_reason(recipient(), suppressed=False) is None


@pytest.mark.parametrize(
    "changes, suppressed, reason",
    [
        ({"subscriber_id": None, "email": None, "status": None, "confirmed": False}, False,
         "erased"),
        ({"email": None}, False, "erased"),
        ({"subscriber_id": None}, False, "erased"),
        ({"status": SubscriberStatus.bounced}, False, "bounced"),
        ({"status": SubscriberStatus.complained}, False, "complained"),
        ({}, True, "suppressed"),
        ({"confirmed": False}, False, "unsubscribed"),
    ],
    ids=["erased", "no-address", "no-subscriber", "bounced", "complained", "suppressed",
         "unsubscribed"],
)
def test_each_reason_to_skip(changes: dict[str, Any], suppressed: bool, reason: str) -> None:
    assert skip_reason(recipient(**changes), suppressed) == reason


@pytest.mark.parametrize(
    "changes, suppressed, reason",
    [
        # Erased wins over everything the row may still say.
        ({"subscriber_id": None, "status": SubscriberStatus.bounced, "confirmed": False}, True,
         "erased"),
        # The subscriber's own status comes before the suppression list …
        ({"status": SubscriberStatus.complained}, True, "complained"),
        ({"status": SubscriberStatus.bounced, "confirmed": False}, False, "bounced"),
        # … and the suppression list before the subscription.
        ({"confirmed": False}, True, "suppressed"),
    ],
)
def test_one_reason_per_recipient_in_a_fixed_order(
    changes: dict[str, Any], suppressed: bool, reason: str,
) -> None:
    assert skip_reason(recipient(**changes), suppressed) == reason


def test_reasons_are_plain_strings_stored_as_such() -> None:
    reason = skip_reason(recipient(status=SubscriberStatus.bounced), False)
    assert type(reason) is str and reason == "bounced"


def test_profile_details_do_not_matter() -> None:
    bare = recipient(first_name="", last_name="", state="", postal_code="", locale="")
    assert skip_reason(bare, suppressed=False) is None


def test_a_suppression_matches_the_address_whatever_its_case() -> None:
    """The recheck looks recipients up by the keyed hash of their address: a bounce recorded
    for ana@example.org suppresses Ana@Example.ORG, and nobody else."""
    hash_of = email_hasher(SimpleNamespace(suppression_hash_key="k"))  # type: ignore[arg-type]
    suppressed = {hash_of("ana@example.org")}
    assert hash_of("Ana@Example.ORG") in suppressed
    assert hash_of("ana@example.net") not in suppressed
    other_key = email_hasher(SimpleNamespace(suppression_hash_key="other"))  # type: ignore[arg-type]
    assert other_key("ana@example.org") not in suppressed
