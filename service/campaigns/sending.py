"""Sending a campaign: freeze the audience, then one RQ job per batch of ≤ 1000.

The ledger is in the database, per recipient (`deliveries`) and per batch (`batches`):

1. `start_campaign` (job) moves scheduled → sending and, in the same transaction, freezes
   the audience with one INSERT … SELECT into `batches` and `deliveries` (people who
   subscribe later are not included). After commit it queues one `send_batch` job per
   batch on `alerts` or `newsletters` — workers take `alerts` first, so an alert
   enqueued during a big newsletter goes out after at most one newsletter batch per worker.
2. `send_batch` takes the batch's advisory lock (`liveness`: how a dead worker is found
   within seconds), claims the batch with a conditional UPDATE (queued → sending, only
   while the campaign is sending: pause and cancel therefore act between batches), re-checks
   every recipient (unsubscribed, bounced, complained or suppressed since → skipped),
   posts one request per language variant, and marks the deliveries sent right after
   each 202. A killed worker can thus duplicate at most the request it had in flight.
3. The last batch to finish moves the campaign to sent.

See `recovery` for what happens when a worker dies in the middle.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from .. import config
from ..bulk import one_of
from ..config import Settings
from ..db import commit_quickly, is_pg, utcnow
from ..mail.base import (
    AuthMailError,
    OutgoingMail,
    PermanentMailError,
    Personalization,
    TransientMailError,
)
from ..mail.compose import safe_name
from ..mail.transport import transport
from ..models import (
    Batch,
    BatchStatus,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    campaign_lists,
)
from ..outbound import emit_campaign_sent
from ..queue import enqueue_after_commit
from ..subscribers import email_hasher
from ..tokens import BatchLinks, one_click_headers
from . import ratecap
from .abtest import freeze_ab
from .audience import audience_query
from .lifecycle import audit, require_transition, transition
from .liveness import BatchHold, BatchLost
from .localtime import due_at, parse_local
from .render import ContentError, RenderedVariant, cached_variant, variant_locale
from .saved import freeze_segment

log = logging.getLogger(__name__)

SYSTEM = "system"
# Transient failures retried inside the job (the worker stays on the batch) before the
# batch is released and queued again for later.
IN_JOB_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)
# A batch that has been claimed this many times without finishing pauses its campaign.
MAX_BATCH_ATTEMPTS = 8

# The campaign jobs, enqueued by name (no domain module imports a job module).
START_JOB = "service.jobs.campaigns.start"
SEND_BATCH_JOB = "service.jobs.campaigns.send_batch"
SEND_TEST_JOB = "service.jobs.campaigns.send_test"
# Every send_batch job's id starts so: `batch_of_job` reads the batch back from it.
_BATCH_JOB_ID = re.compile(r"al-batch-(\d+)(?:-|$)")


def batch_job_id(batch_id: int, suffix: str = "") -> str:
    return f"al-batch-{batch_id}{suffix}"


def batch_of_job(job_id: str) -> int | None:
    """The batch a send_batch job's id names, or None for any other job."""
    match = _BATCH_JOB_ID.match(job_id)
    return int(match.group(1)) if match else None


def queue_for(kind: CampaignKind) -> str:
    return "alerts" if kind == CampaignKind.alert else "newsletters"


# ---------------------------------------------------------------- staff actions


def request_send(session: Session, campaign: Campaign, actor: str,
                 send_at: datetime | None = None, send_at_local: str = "") -> None:
    """draft → scheduled; the start job runs at `send_at` (or now). Caller commits.

    With `send_at_local` ("YYYY-MM-DDTHH:MM", validated by the caller) the campaign starts
    now, and its batches wait for that wall time in each recipient's zone (`localtime`)."""
    when = send_at or utcnow()
    require_transition(session, campaign, "schedule", actor,
                       values={"send_at": when, "send_at_local": send_at_local})
    enqueue_after_commit(
        session, START_JOB, campaign.id, queue=queue_for(campaign.kind),
        job_id=f"al-campaign-{campaign.id}-start",
        at=when if when > utcnow() + timedelta(seconds=1) else None,
    )


def resume(session: Session, campaign: Campaign, actor: str) -> None:
    require_transition(session, campaign, "resume", actor)
    enqueue_queued_batches(session, campaign, tag="resume")


def enqueue_queued_batches(session: Session, campaign: Campaign, *, tag: str = "",
                           due_only: bool = False) -> int:
    """A job for each queued batch: at once for those due, at their `not_before` for the
    others (local-hour delivery), or not at all for those with `due_only`."""
    now = utcnow()
    query = select(Batch.id, Batch.not_before).where(
        Batch.campaign_id == campaign.id, Batch.status == BatchStatus.queued)
    if due_only:
        query = query.where(due(now))
    rows = session.execute(query.order_by(Batch.seq)).all()
    enqueue_batches(session, campaign.kind,
                    [batch_id for batch_id, at in rows if at is None or at <= now], tag=tag)
    later: dict[datetime, list[int]] = {}
    for batch_id, at in rows:
        if at is not None and at > now:
            later.setdefault(at, []).append(batch_id)
    for at, ids in later.items():
        enqueue_batches(session, campaign.kind, ids, tag=tag, at=at)
    return len(rows)


def due(now: datetime) -> Any:
    """A batch that may go now (no `not_before`, or it has passed)."""
    return or_(Batch.not_before.is_(None), Batch.not_before <= now)


def enqueue_batches(session: Session, kind: CampaignKind, batch_ids: Sequence[int], *,
                    tag: str = "", at_front: bool = False, at: datetime | None = None) -> None:
    """A send_batch job for each batch, once `session` commits (`at_front`: before every
    job already waiting, for batches that were interrupted and must not wait again)."""
    suffix = f"-{tag}{int(time.time() * 1000)}" if tag else ""
    for batch_id in batch_ids:
        enqueue_after_commit(session, SEND_BATCH_JOB, batch_id, queue=queue_for(kind),
                             job_id=batch_job_id(batch_id, suffix), at_front=at_front, at=at)


# ---------------------------------------------------------------- freezing


def freeze_audience(session: Session, campaign: Campaign, batch_size: int) -> int:
    """Copy the audience into deliveries, grouped into batches; return the audience size.

    A campaign following a saved segment gets that segment's definition copied onto it
    first (`saved.freeze_segment`): the audience is frozen with exactly that copy. A
    local-hour campaign's batches never mix time zones (`_freeze_by_zone`), and each
    zone's batches get their moment (`schedule_zones`)."""
    segment = freeze_segment(session, campaign)
    by_zone = bool(campaign.send_at_local)
    query = audience_query([ml.id for ml in campaign.lists], segment)
    if by_zone:
        query = query.add_columns(Subscriber.timezone.label("timezone"))
    audience = query.subquery()
    if is_pg(session) and by_zone:
        _freeze_by_zone(session, campaign, audience, batch_size)
        schedule_zones(session, campaign)
        return counts(session, campaign.id)["total"]
    if is_pg(session):
        numbered = select(
            audience.c.id.label("sid"),
            ((func.row_number().over(order_by=audience.c.id) - 1) // batch_size).label("seq"),
        ).cte("aud")
        # One statement: batches via a data-modifying CTE, deliveries joined to them.
        new_batches = (
            insert(Batch)
            .from_select(
                ["campaign_id", "seq", "status", "attempts", "message_id", "error", "size"],
                select(literal(campaign.id), numbered.c.seq, literal(BatchStatus.queued.value),
                       literal(0), literal(""), literal(""), func.count())
                .group_by(numbered.c.seq),
            )
            .returning(Batch.id, Batch.seq)
            .cte("nb")
        )
        stmt = (
            insert(Delivery)
            .from_select(
                ["campaign_id", "batch_id", "subscriber_id", "status", "reason",
                 "message_id", "event_status"],
                select(literal(campaign.id), new_batches.c.id, numbered.c.sid,
                       literal(DeliveryStatus.queued.value), literal(""), literal(""),
                       literal("")).join_from(numbered, new_batches,
                                              new_batches.c.seq == numbered.c.seq),
            )
            .add_cte(new_batches, nest_here=True)
        )
        session.execute(stmt)
        # (psycopg reports no row count for this statement, -1: the new batches' sizes
        # add up to it)
        return counts(session, campaign.id)["total"]
    # SQLite (embedded mode, small lists): two steps inside the same write transaction.
    # (Deliveries of one time zone get consecutive ids, so a batch is an id range.)
    order = [audience.c.timezone, audience.c.id] if by_zone else [audience.c.id]
    session.execute(
        insert(Delivery).from_select(
            ["campaign_id", "subscriber_id", "status", "reason", "message_id", "event_status"],
            select(literal(campaign.id), audience.c.id, literal(DeliveryStatus.queued.value),
                   literal(""), literal(""), literal("")).order_by(*order),
        )
    )
    ids = select(Delivery.id, literal("")).where(Delivery.campaign_id == campaign.id)
    if by_zone:
        ids = select(Delivery.id, Subscriber.timezone).join_from(
            Delivery, Subscriber, Subscriber.id == Delivery.subscriber_id,
        ).where(Delivery.campaign_id == campaign.id)
    rows = session.execute(ids.order_by(Delivery.id)).all()
    chunks: list[tuple[str, list[int]]] = []
    for delivery_id, tz in rows:
        if not chunks or chunks[-1][0] != tz or len(chunks[-1][1]) >= batch_size:
            chunks.append((tz, []))
        chunks[-1][1].append(delivery_id)
    for seq, (tz, chunk) in enumerate(chunks):
        batch = Batch(campaign_id=campaign.id, seq=seq, size=len(chunk), timezone=tz)
        session.add(batch)
        session.flush()
        session.execute(
            update(Delivery).where(Delivery.campaign_id == campaign.id,
                                   Delivery.id.between(chunk[0], chunk[-1]))
            .values(batch_id=batch.id).execution_options(synchronize_session=False)
        )
    if by_zone:
        schedule_zones(session, campaign)
    return len(rows)


# ---------------------------------------------------------------- local-hour delivery


def _freeze_by_zone(session: Session, campaign: Campaign, audience: Any,
                    batch_size: int) -> None:
    """The freeze's one INSERT … SELECT for a local-hour campaign (PostgreSQL).

    One sort of the audience by (zone, id), where a plain freeze sorts it by id, numbers
    the recipients within their time zone (as stored: "" and unknown names get the default
    zone's moment but batches of their own); each zone's batches then follow the previous
    zones' (an offset from a running sum over the few zones, joined back by hash), so
    the batches, the deliveries and the join between them have exactly the shape of a
    plain freeze. No per-recipient work outside SQL."""
    # (byte order, "C": sorting by a text key in the database's collation costs more)
    zone = audience.c.timezone.collate("C")
    ranked = select(
        audience.c.id.label("sid"),
        audience.c.timezone.label("tz"),
        ((func.row_number().over(partition_by=zone, order_by=audience.c.id) - 1)
         // batch_size).label("chunk"),
    ).cte("aud_zone")
    per_zone = (
        select(ranked.c.tz, (func.max(ranked.c.chunk) + 1).label("n"))
        .group_by(ranked.c.tz).cte("zones")
    )
    offsets = select(
        per_zone.c.tz,
        (func.sum(per_zone.c.n).over(order_by=per_zone.c.tz.collate("C")) - per_zone.c.n)
        .label("first"),
    ).cte("offsets")
    numbered = (
        select(ranked.c.sid, ranked.c.tz, (ranked.c.chunk + offsets.c.first).label("seq"))
        .join_from(ranked, offsets, offsets.c.tz == ranked.c.tz)
        .cte("aud")
    )
    new_batches = (
        insert(Batch)
        .from_select(
            ["campaign_id", "seq", "status", "attempts", "message_id", "error", "size",
             "timezone"],
            select(literal(campaign.id), numbered.c.seq, literal(BatchStatus.queued.value),
                   literal(0), literal(""), literal(""), func.count(), func.min(numbered.c.tz))
            .group_by(numbered.c.seq),
        )
        .returning(Batch.id, Batch.seq)
        .cte("nb")
    )
    session.execute(
        insert(Delivery)
        .from_select(
            ["campaign_id", "batch_id", "subscriber_id", "status", "reason", "message_id",
             "event_status"],
            select(literal(campaign.id), new_batches.c.id, numbered.c.sid,
                   literal(DeliveryStatus.queued.value), literal(""), literal(""), literal(""))
            .join_from(numbered, new_batches, new_batches.c.seq == numbered.c.seq),
        )
        .add_cte(new_batches, nest_here=True)
    )


def schedule_zones(session: Session, campaign: Campaign) -> None:
    """Give each time zone's batches their moment (`localtime.due_at`): one grouped query
    for the zones, one UPDATE per zone whose moment is still ahead (the others go at once)."""
    wall = parse_local(campaign.send_at_local)
    default = config.settings().default_timezone
    now = utcnow()
    zones = session.scalars(
        select(Batch.timezone).where(Batch.campaign_id == campaign.id).group_by(Batch.timezone)
    ).all()
    for tz in zones:
        at = due_at(wall, tz, default, now)
        if at is not None:
            session.execute(
                update(Batch).where(Batch.campaign_id == campaign.id, Batch.timezone == tz)
                .values(not_before=at).execution_options(synchronize_session=False)
            )


def schedule(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """`[{"at": ISO UTC, "recipients": n}, …]` by time, for a frozen local-hour campaign
    (batches due at once show the moment of the freeze); [] for any other campaign."""
    if not campaign.send_at_local:
        return []
    rows = session.execute(
        select(Batch.not_before, func.sum(Batch.size)).where(Batch.campaign_id == campaign.id)
        .group_by(Batch.not_before)
    ).all()
    merged: dict[datetime, int] = {}
    for at, size in rows:
        when = at or campaign.started_at or utcnow()
        merged[when] = merged.get(when, 0) + int(size or 0)
    return [{"at": at.isoformat(), "recipients": n} for at, n in sorted(merged.items())]


def start_campaign(session: Session, campaign_id: int) -> None:
    """scheduled → sending, freeze the audience and queue its batches (idempotent)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.scheduled:
        return
    if campaign.send_at is not None and campaign.send_at > utcnow() + timedelta(seconds=5):
        return  # fired early (clock skew); the recovery pass starts it when due
    if not transition(session, campaign_id, "start", SYSTEM):
        session.rollback()
        return
    batch_size = config.settings().campaign_batch_size
    if campaign.ab_test:  # an A/B subject test: a sample first, the rest held (abtest)
        freeze_segment(session, campaign)  # a followed saved segment is copied first
        total = freeze_ab(session, campaign, batch_size)
    else:
        total = freeze_audience(session, campaign, batch_size)
    audit(session, SYSTEM, "frozen", campaign_id, total=total)
    enqueue_queued_batches(session, campaign)
    session.commit()
    log.info("campaign %s started: %d recipients", campaign_id, total)
    if total == 0:
        finish_if_done(session, campaign_id)


def finish_if_done(session: Session, campaign_id: int) -> bool:
    """sending → sent once no batch is queued, held or being sent (run after each batch)."""
    open_batches = exists().where(
        Batch.campaign_id == campaign_id,
        Batch.status.in_([BatchStatus.queued, BatchStatus.sending, BatchStatus.held]),
    )
    done = transition(session, campaign_id, "finish", SYSTEM, only_if=~open_batches)
    if done:
        # In the same transaction as the move to `sent` (the outgoing webhooks' outbox).
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            emit_campaign_sent(session, campaign, counts(session, campaign_id))
    session.commit()
    return done


# ---------------------------------------------------------------- the batch job


@dataclass(frozen=True)
class Claim:
    """The batch a `send_batch` job holds."""

    id: int
    campaign_id: int
    seq: int
    # The batch's `attempts` after this claim: the fencing token of every later write
    # about the batch (a claim after a requeue has another).
    attempt: int
    # The A/B subject of a test's sample batch (None: no test, or the winner's).
    variant: int | None = None


def claim_batch(session: Session, batch_id: int) -> Claim | None:
    campaign_sending = exists().where(
        Campaign.id == Batch.campaign_id, Campaign.status == CampaignStatus.sending
    )
    row = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.queued, campaign_sending,
               due(utcnow()))
        .values(status=BatchStatus.sending, attempts=Batch.attempts + 1, claimed_at=utcnow())
        .returning(Batch.campaign_id, Batch.seq, Batch.attempts, Batch.variant)
        .execution_options(synchronize_session=False)
    ).first()
    commit_quickly(session)
    return (Claim(batch_id, row.campaign_id, row.seq, row.attempts, row.variant)
            if row is not None else None)


def _mark(session: Session, batch_id: int, delivery_ids: Sequence[int],
          status: DeliveryStatus, **values: Any) -> None:
    """Move queued deliveries of the batch to `status`, and count them on the batch (the
    caller commits both together, so the batch's counters are always exact)."""
    if not delivery_ids:
        return
    marked = session.execute(
        update(Delivery)
        .where(one_of(session, Delivery.id, list(delivery_ids), ids=True),
               Delivery.status == DeliveryStatus.queued)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if marked:
        counter = getattr(Batch, status.value)
        session.execute(update(Batch).where(Batch.id == batch_id)
                        .values({counter: counter + marked})
                        .execution_options(synchronize_session=False))


class Recipient(NamedTuple):
    """One queued delivery of a batch, with what its mail needs. (A plain tuple: reading
    a field of SQLAlchemy's Row costs ten times as much, and a batch reads ~15 per
    recipient.)"""

    id: int  # the delivery
    subscriber_id: int | None  # None once erased
    email: str | None
    first_name: str
    last_name: str
    state: str
    postal_code: str
    locale: str
    status: SubscriberStatus | None
    confirmed: bool


def skip_reason(r: Recipient, suppressed: bool) -> str | None:
    """Why a queued recipient is no longer to be mailed (the delivery's `reason`), or None
    to mail them: erased, then no longer active (bounced, complained), then suppressed,
    then no longer confirmed on any of the campaign's lists (unsubscribed)."""
    if r.subscriber_id is None or r.email is None:
        return "erased"
    if r.status != SubscriberStatus.active:
        return str(r.status)
    if suppressed:
        return "suppressed"
    if not r.confirmed:
        return "unsubscribed"
    return None


def recheck(session: Session, list_ids: list[int], batch_id: int) -> list[Recipient]:
    """The batch's queued recipients still to mail; mark the others skipped (committed)."""
    # Still confirmed on one of the campaign's lists: a semi-join in the same query (a
    # second query with 1000 ids in an IN list cost more to build and parse than to run).
    confirmed = exists().where(
        Subscription.subscriber_id == Delivery.subscriber_id,
        Subscription.list_id.in_(list_ids),
        Subscription.status == SubscriptionStatus.confirmed,
    )
    rows = [Recipient._make(row) for row in session.execute(
        select(Delivery.id, Delivery.subscriber_id, Subscriber.email, Subscriber.first_name,
               Subscriber.last_name, Subscriber.state, Subscriber.postal_code,
               Subscriber.locale, Subscriber.status, confirmed.label("confirmed"))
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
        .where(Delivery.batch_id == batch_id, Delivery.status == DeliveryStatus.queued)
        .order_by(Delivery.id)
    )]
    hash_of = email_hasher(config.settings())
    hashes = {r.id: hash_of(r.email) for r in rows if r.email}
    suppressed = set(session.scalars(
        select(Suppression.email_hash)
        .where(one_of(session, Suppression.email_hash, list(hashes.values())))
    )) if hashes else set()
    skipped: dict[str, list[int]] = {}
    keep: list[Recipient] = []
    for r in rows:
        reason = skip_reason(r, hashes.get(r.id) in suppressed)
        if reason is None:
            keep.append(r)
        else:
            skipped.setdefault(reason, []).append(r.id)
    for reason, ids in skipped.items():
        _mark(session, batch_id, ids, DeliveryStatus.skipped, reason=reason)
    if skipped:
        commit_quickly(session)
    else:
        session.commit()  # read only: ends the snapshot before the request goes out
    return keep


class Personalizer:
    """Builds the personalizations of one batch for one variant.

    What every recipient of the batch shares (the links' signing set-up, the placeholder
    keys, the campaign's custom_args value) is worked out once, not once per recipient:
    at 1000 recipients per request this is most of a worker's time.
    """

    def __init__(self, campaign: Campaign, variant: RenderedVariant, list_ids: list[int],
                 conf: Settings) -> None:
        self.variant = variant
        self.links = BatchLinks(conf, list_ids, campaign.id)
        self.wants_preferences = variant.uses("preferences_url")
        self.wants_view = variant.uses("view")
        self.campaign_id = str(campaign.id)

    def __call__(self, row: Recipient | _TestRow) -> Personalization:
        # (recheck hands out only recipients with an id and an address; a test send to
        # an address that is nobody's uses links naming subscriber 0)
        subscriber_id, email = row.subscriber_id or 0, row.email or ""
        first_name, last_name = row.first_name or "", row.last_name or ""
        unsubscribe = self.links.unsubscribe_url(subscriber_id)
        values = {
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "state": row.state or "",
            "postal_code": row.postal_code or "",
            "unsubscribe_url": unsubscribe,
            "preferences_url": self.links.preferences_url(subscriber_id)
            if self.wants_preferences else "",
            "view": self.links.view_tail(subscriber_id) if self.wants_view else "",
        }
        return Personalization(
            email=email,
            name=safe_name(f"{first_name} {last_name}"),
            substitutions=self.variant.substitutions(values),
            headers=one_click_headers(unsubscribe),
            custom_args={"campaign_id": self.campaign_id, "subscriber_id": str(subscriber_id)},
        )


def build_mail(campaign: Campaign, variant: RenderedVariant,
               personalizations: list[Personalization], conf: Settings) -> OutgoingMail:
    from email.utils import parseaddr

    from_name, from_email = parseaddr(conf.mail_from)
    return OutgoingMail(
        subject=variant.subject, html=variant.html, text=variant.text,
        from_email=from_email, from_name=from_name, reply_to=conf.mail_reply_to,
        personalizations=personalizations,
        categories=[f"campaign-{campaign.kind.value}", f"campaign-{campaign.id}"],
    )


class BatchReleased(Exception):
    """The batch went back to the queue (retry later, or the campaign was paused)."""


def send_batch(session: Session, batch_id: int) -> None:
    """Send one batch. Safe to run twice (the lock and the claim make the second a no-op).

    The batch's advisory lock is taken before the claim and held until the batch is
    done or given back: while it is held, the recovery pass leaves the batch alone."""
    hold = BatchHold(session, batch_id)
    if not hold.acquire():
        return
    try:
        _send_claimed(session, batch_id, hold)
    except BatchLost as exc:
        session.rollback()
        log.warning("%s: stopping", exc)
    finally:
        hold.release()


def _send_claimed(session: Session, batch_id: int, hold: BatchHold) -> None:
    batch = claim_batch(session, batch_id)
    if batch is None:
        return
    campaign = session.get(Campaign, batch.campaign_id)
    assert campaign is not None
    try:
        subject = ab_subject(campaign, batch)
        list_ids = sorted(session.scalars(
            select(campaign_lists.c.list_id).where(campaign_lists.c.campaign_id == campaign.id)))
        rows = recheck(session, list_ids, batch_id)
        conf = config.settings()
        by_locale: dict[str, list[Recipient]] = {}
        for row in rows:
            by_locale.setdefault(variant_locale(row.locale), []).append(row)
        for n, (locale, group) in enumerate(sorted(by_locale.items())):
            if n:
                commit_quickly(session)  # the previous language's marks
            variant = cached_variant(campaign, locale, ab=subject)
            personalize = Personalizer(campaign, variant, list_ids, conf)
            pending = [(row.id, personalize(row)) for row in group]
            _post(session, campaign, batch, hold, variant, pending, conf, fresh_claim=n == 0)
    except BatchReleased:
        return
    except ContentError as exc:
        session.rollback()
        transition(session, campaign.id, "fail", SYSTEM, reason=str(exc))
        session.commit()
        return
    # The last request's marks and the batch's end in one commit.
    session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.status == BatchStatus.sending,
                            Batch.attempts == batch.attempt)
        .values(status=BatchStatus.done, finished_at=utcnow(), error="")
        .execution_options(synchronize_session=False)
    )
    commit_quickly(session)
    finish_if_done(session, campaign.id)


def ab_subject(campaign: Campaign, batch: Claim) -> int | None:
    """Which A/B subject the batch sends (None: the campaign's own subject): its own for
    a batch of the test's sample, the winner's for the rest. Only the decision releases
    the rest's batches, together with the winner, so the rest always has one."""
    if not campaign.ab_test:
        return None
    subject = batch.variant if batch.variant is not None else campaign.ab_winner
    if subject is None:  # cannot happen (see above); never send such a batch
        raise ContentError("A batch of an A/B test was released before its decision.")
    return subject


def _post(session: Session, campaign: Campaign, batch: Claim, hold: BatchHold,
          variant: RenderedVariant, pending: list[tuple[int, Personalization]],
          conf: Settings, *, fresh_claim: bool = False) -> None:
    """Post `pending` until each is sent or failed; raise BatchReleased to give up for now.

    Each attempt but one right after the claim first renews the batch's lease, which
    also checks that this worker still holds the batch (else BatchLost: nothing more is
    sent). The final marks are left for the caller to commit (with the batch's end, or
    before the next language's request)."""
    failures = 0
    while pending:
        if not fresh_claim:
            hold.renew(session, batch.attempt, utcnow())  # (the claim stamped the first)
        fresh_claim = False
        grant = ratecap.acquire(campaign.id, campaign.max_per_minute, len(pending))
        if grant.granted == 0:
            _defer(session, campaign, batch, grant.retry_after)
        later: list[tuple[int, Personalization]] = []
        if 0 < grant.granted < len(pending):  # the cap allows part of it: the rest waits
            pending, later = pending[:grant.granted], pending[grant.granted:]
        mail = build_mail(campaign, variant, [p for _, p in pending], conf)
        try:
            result = transport().send(mail)
        except AuthMailError as exc:
            ratecap.settle(grant)
            _release(session, campaign, batch, str(exc), pause_reason=f"SendGrid refused: {exc}")
        except PermanentMailError as exc:
            ratecap.settle(grant)
            if exc.bad_personalizations:
                bad = {i: reason for i, reason in exc.bad_personalizations.items()
                       if 0 <= i < len(pending)}
                if bad:
                    for index, reason in bad.items():
                        _mark(session, batch.id, [pending[index][0]], DeliveryStatus.failed,
                              reason=reason[:1000] or "rejected")
                    commit_quickly(session)
                    pending = [item for i, item in enumerate(pending) if i not in bad] + later
                    continue
            _mark(session, batch.id, [d for d, _ in pending], DeliveryStatus.failed,
                  reason=str(exc)[:1000])
            if not later:
                return
            commit_quickly(session)
            pending = later
            continue
        except TransientMailError as exc:
            ratecap.settle(grant)
            pending = pending + later
            failures += 1
            wait = exc.retry_after if exc.retry_after is not None else (
                IN_JOB_BACKOFF[min(failures - 1, len(IN_JOB_BACKOFF) - 1)])
            if failures > len(IN_JOB_BACKOFF) or wait > conf.campaign_lease_seconds / 2:
                _release(session, campaign, batch, str(exc), retry_in=max(wait, 5.0))
            log.warning("batch %s: %s; retrying in %.1fs", batch.id, exc, wait)
            time.sleep(wait)
            continue
        ratecap.settle(grant)
        _mark(session, batch.id, [d for d, _ in pending], DeliveryStatus.sent, sent_at=utcnow(),
              message_id=result.message_id[:100])
        if not later:
            return
        commit_quickly(session)  # these marks stand even if the rest is deferred
        pending, failures = later, 0


def _release(session: Session, campaign: Campaign, batch: Claim, error: str, *,
             retry_in: float | None = None, pause_reason: str = "") -> None:
    """Give the batch back (status queued) and either retry later or pause the campaign."""
    session.rollback()
    session.execute(
        update(Batch).where(Batch.id == batch.id, Batch.status == BatchStatus.sending,
                            Batch.attempts == batch.attempt)
        .values(status=BatchStatus.queued, error=error[:2000])
        .execution_options(synchronize_session=False)
    )
    attempts, deferrals = session.execute(
        select(Batch.attempts, Batch.deferrals).where(Batch.id == batch.id)).one()
    if not pause_reason and attempts - deferrals >= MAX_BATCH_ATTEMPTS:
        pause_reason = f"Too many errors: batch {batch.seq} failed {attempts} times ({error})"
    if pause_reason:
        transition(session, campaign.id, "pause", SYSTEM, reason=pause_reason[:2000])
    elif retry_in is not None:
        enqueue_after_commit(session, SEND_BATCH_JOB, batch.id, queue=queue_for(campaign.kind),
                             job_id=batch_job_id(batch.id, f"-retry{attempts}"),
                             at=utcnow() + timedelta(seconds=retry_in))
    session.commit()
    raise BatchReleased(error)


def _defer(session: Session, campaign: Campaign, batch: Claim, wait: float) -> None:
    """The send-rate cap allows nothing now: give the batch back (its sent marks are
    committed) and queue it again in `wait` seconds, so this worker takes other work
    (alerts first) meanwhile. A deferral is not an error (`deferrals` is subtracted from
    `attempts` where too many attempts pause a campaign)."""
    session.rollback()
    session.execute(
        update(Batch).where(Batch.id == batch.id, Batch.status == BatchStatus.sending,
                            Batch.attempts == batch.attempt)
        .values(status=BatchStatus.queued, deferrals=Batch.deferrals + 1,
                error="waiting for the send-rate cap")
        .execution_options(synchronize_session=False)
    )
    enqueue_after_commit(session, SEND_BATCH_JOB, batch.id, queue=queue_for(campaign.kind),
                         job_id=batch_job_id(batch.id, f"-defer{time.time_ns()}"),
                         at=utcnow() + timedelta(seconds=wait))
    commit_quickly(session)
    raise BatchReleased("rate cap")


# ---------------------------------------------------------------- counts and tests


def counts(session: Session, campaign_id: int) -> dict[str, int]:
    """total / queued / sent / failed / skipped, summed over the campaign's batches."""
    return counts_by_campaign(session, [campaign_id])[campaign_id]


def counts_by_campaign(session: Session, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """`counts` for many campaigns in one grouped query (the campaign list page)."""
    result = {cid: {"total": 0, "queued": 0, "sent": 0, "failed": 0, "skipped": 0}
              for cid in campaign_ids}
    if not campaign_ids:
        return result
    rows = session.execute(
        select(Batch.campaign_id, func.sum(Batch.size), func.sum(Batch.sent),
               func.sum(Batch.failed), func.sum(Batch.skipped))
        .where(Batch.campaign_id.in_(campaign_ids)).group_by(Batch.campaign_id)
    )
    for cid, total, sent, failed, skipped in rows:
        c = result[cid]
        c.update(total=int(total), sent=int(sent), failed=int(failed), skipped=int(skipped))
        c["queued"] = c["total"] - c["sent"] - c["failed"] - c["skipped"]
    return result


def send_test(session: Session, campaign_id: int, emails: list[str], actor: str) -> None:
    """The campaign as its recipients would get it, to staff addresses; counts untouched.

    Each address gets the variant of the subscriber with that address if there is one
    (with their own links), else English with links that name no subscriber.
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return
    conf = config.settings()
    list_ids = sorted(ml.id for ml in campaign.lists)
    for address in emails:
        sub = session.scalars(select(Subscriber).where(
            Subscriber.email_key == address.lower())).first()
        variant = cached_variant(campaign, variant_locale(sub.locale if sub else "en"), test=True)
        row = _TestRow(sub, address)
        mail = build_mail(campaign, variant,
                          [Personalizer(campaign, variant, list_ids, conf)(row)], conf)
        mail.categories.append("campaign-test")
        for p in mail.personalizations:
            # Events about a test mail must not count in the campaign's statistics.
            p.custom_args = {"test_of_campaign": str(campaign_id)}
        transport().send(mail)
    audit(session, actor, "test", campaign_id, emails=emails)
    session.commit()


class _TestRow:
    def __init__(self, sub: Subscriber | None, address: str) -> None:
        self.subscriber_id = sub.id if sub else 0
        self.email = address
        self.first_name = sub.first_name if sub else "Test"
        self.last_name = sub.last_name if sub else ""
        self.state = sub.state if sub else ""
        self.postal_code = sub.postal_code if sub else ""
