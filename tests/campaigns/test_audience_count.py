"""The audience count without a segment (members less those left out) agrees with the
audience query it shortcuts, person by person kind: two lists, pending and unsubscribed
subscriptions, every status, suppressions in another case and hash-only ones, people both
bounced and suppressed."""

from __future__ import annotations

from sqlalchemy import select

from service import db
from service.campaigns.audience import audience_query, count_audience
from service.models import Subscriber, SubscriberStatus, SubscriptionStatus
from tests import factories

C, P, U = (SubscriptionStatus.confirmed, SubscriptionStatus.pending,
           SubscriptionStatus.unsubscribed)


def test_the_count_without_a_segment_is_the_query_s_size(app):
    both = {"newsletter": C, "action-alerts": C}
    people = [
        ("in-one@example.org", SubscriberStatus.active, {"newsletter": C}),
        ("in-both@example.org", SubscriberStatus.active, both),
        ("pending@example.org", SubscriberStatus.active, {"newsletter": P}),
        ("left@example.org", SubscriberStatus.active, {"newsletter": U, "action-alerts": C}),
        ("bounced@example.org", SubscriberStatus.bounced, both),
        ("complained@example.org", SubscriberStatus.complained, {"newsletter": C}),
        # A hard bounce: not active *and* suppressed, left out once, not twice.
        ("hard-bounce@example.org", SubscriberStatus.bounced, both),
        ("Suppressed@Example.org", SubscriberStatus.active, both),
        ("hash-only@example.org", SubscriberStatus.active, {"newsletter": C}),
        ("nowhere@example.org", SubscriberStatus.active, {}),
    ]
    for email, status, lists in people:
        factories.subscriber(email, status=status, lists=lists, commit=False)
    factories.suppression("suppressed@EXAMPLE.org", commit=False)  # another case
    factories.suppression("hash-only@example.org", keep_address=False, commit=False)
    factories.suppression("stranger@example.org", commit=False)  # no such subscriber
    factories.suppression("hard-bounce@example.org", commit=False)
    db.session().commit()
    session = db.session()
    # newsletter: in-one, in-both, hash-only; alerts: in-both, left; both: the four.
    for slugs, want in ((["newsletter"], 3), (["action-alerts"], 2),
                        (["newsletter", "action-alerts"], 4), ([], 0)):
        ids = factories.list_ids(*slugs) if slugs else []
        listed = set(session.scalars(audience_query(ids, {})))
        # The hash-only suppression is matched at each batch's recheck, not here (both
        # ways of counting agree on that).
        assert count_audience(session, ids, {}) == len(listed) == want, slugs
        assert count_audience(session, ids, None) == want
    everyone = session.scalars(select(Subscriber.id)).all()
    assert len(everyone) == len(people)


def test_the_count_s_database_settings_end_with_it(app, backend):
    """The count runs without JIT and with more work_mem (PostgreSQL), in a savepoint:
    the rest of the transaction keeps its settings, and its own changes."""
    from sqlalchemy import text

    session = db.session()
    shown = "SELECT current_setting('jit') || ' ' || current_setting('work_mem')"
    before = session.scalar(text(shown)) if backend == "postgres" else None
    factories.subscriber("uncommitted@example.org", lists={"newsletter": C}, commit=False)
    assert count_audience(session, factories.list_ids("newsletter"), {}) == 1
    if backend == "postgres":
        assert session.scalar(text(shown)) == before
        assert before is not None and not before.endswith(" 32MB")
    session.commit()
    assert session.scalars(select(Subscriber.email)).all() == ["uncommitted@example.org"]
