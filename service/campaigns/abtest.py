"""A/B subject tests: the set-up, the split of the audience, and the variants' figures.

A campaign may carry `ab_test = {"subjects": [...], "sample_percent", "metric",
"wait_minutes"}`. Starting it freezes the audience as usual (`sending.start_campaign`),
but through `freeze_ab` here:

- `sample_percent` of the frozen audience, drawn at random, is the *sample*; it is dealt
  round-robin (in random order) between the subjects, so their shares differ by one at
  most. Every batch of the sample holds one subject only (`batches.variant`), and each of
  its deliveries records it (`deliveries.variant`): the ledger says who got what;
- the rest of the audience is frozen too, into batches that are `held`: no job claims a
  held batch, and the campaign cannot finish while one is left;
- `campaigns.ab_status` becomes "testing", and the decision is due `wait_minutes` after
  the start (`ab_decide_at`).

The decision itself (`abdecide`) is one transaction: status testing → decided with the
winner, and the held batches released to `queued`; their recipients get the winner's
subject (a batch without a variant takes `campaigns.ab_winner`). Nobody is in two batches,
so nobody can get two subjects, whatever crashes.

The variants' figures count the sample only: `sent` sums the sample batches' counters,
`unique_opens` / `unique_clicks` join the webhook's unique markers
(`campaign_event_uniques`, whose recipient is the subscriber id from the mail's
custom_args) to the sample's deliveries.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import String, case, cast, func, insert, literal, select
from sqlalchemy.orm import Session

from ..db import is_pg, utcnow
from ..fields import BIDI_CONTROL, CONTROL
from ..i18n import LOCALES
from ..models import (
    Batch,
    BatchStatus,
    Campaign,
    CampaignEventUnique,
    Delivery,
    DeliveryStatus,
)
from ..queue import enqueue_after_commit
from .audience import campaign_audience

# The automatic decision, enqueued by name for `ab_decide_at` (the workers' watch pass
# also decides a test that is due, should this job be lost).
DECIDE_JOB = "service.jobs.campaigns.decide_ab"

TESTING = "testing"
DECIDED = "decided"
METRICS = ("unique_opens", "unique_clicks")
# The webhook's unique event behind each metric.
METRIC_EVENTS = {"unique_opens": "open", "unique_clicks": "click"}
MIN_SUBJECTS, MAX_SUBJECTS = 2, 5
MAX_SAMPLE_PERCENT = 50
# A wait beyond a month is a typo; it also keeps the decision time a sane date.
MAX_WAIT_MINUTES = 60 * 24 * 30
SUBJECT_LENGTH = 300


# ---------------------------------------------------------------- the set-up (input)


def _subject_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{where}: a subject is a string.")
    if not value.strip():
        raise ValidationError(f"{where}: a subject must not be empty.")
    if len(value) > SUBJECT_LENGTH:
        raise ValidationError(f"{where}: at most {SUBJECT_LENGTH} characters.")
    if CONTROL.search(value) or BIDI_CONTROL.search(value):
        raise ValidationError(f"{where}: must not contain line breaks, control characters "
                              "or bidirectional controls.")
    return value


class AbSubject(fields.Field):
    """A subject for every language (a string), or one per language
    (`{"en": str, "es": str}`, both given)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return _subject_text(value, "subject")
        if isinstance(value, dict):
            unknown = sorted(str(k)[:20] for k in value if k not in LOCALES)
            if unknown:
                raise ValidationError(f"Unknown language: {', '.join(unknown)}.")
            missing = [locale for locale in LOCALES if locale not in value]
            if missing:
                raise ValidationError(f"Give the subject in every language (missing: "
                                      f"{', '.join(missing)}).")
            subjects, errors = {}, {}
            for locale in LOCALES:
                try:
                    subjects[locale] = _subject_text(value[locale], locale)
                except ValidationError as exc:
                    errors[locale] = exc.messages
            if errors:  # named by language: {"es": ["es: must not be empty."]}
                raise ValidationError(errors)
            return subjects
        raise ValidationError("A subject is a string or {\"en\": …, \"es\": …}.")


class AbTestIn(Schema):
    subjects = fields.List(AbSubject(), required=True,
                           validate=validate.Length(min=MIN_SUBJECTS, max=MAX_SUBJECTS))
    sample_percent = fields.Integer(required=True, strict=True,
                                    validate=validate.Range(min=1, max=MAX_SAMPLE_PERCENT))
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    wait_minutes = fields.Integer(required=True, strict=True,
                                  validate=validate.Range(min=1, max=MAX_WAIT_MINUTES))

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        """Every key, also in a PATCH (whose partial loading reaches nested schemas): a
        set-up is replaced whole, never merged."""
        missing = [name for name in self.fields if name not in data]
        if missing:
            raise ValidationError({name: ["Missing data for required field."]
                                   for name in missing})


def subject_sources(ab_test: dict[str, Any] | None) -> dict[str, str]:
    """Every subject template of a set-up, named as the API names its fields
    (`ab_test.subjects.1`, `ab_test.subjects.1.es`), for the trial render."""
    sources: dict[str, str] = {}
    for i, subject in enumerate((ab_test or {}).get("subjects") or []):
        if isinstance(subject, str):
            sources[f"ab_test.subjects.{i}"] = subject
        elif isinstance(subject, dict):
            for locale, text in subject.items():
                if isinstance(text, str):
                    sources[f"ab_test.subjects.{i}.{locale}"] = text
    return sources


def subject_for(ab_test: dict[str, Any], index: int, locale: str) -> str:
    """The subject template of variant `index` for recipients of `locale`."""
    subject = ab_test["subjects"][index]
    if isinstance(subject, dict):
        return str(subject.get(locale) or subject.get("en") or "")
    return str(subject)


def subject_label(ab_test: dict[str, Any], index: int) -> str:
    """One line naming variant `index` for staff (its English subject)."""
    return subject_for(ab_test, index, "en")


# ---------------------------------------------------------------- the freeze


def freeze_ab(session: Session, campaign: Campaign, batch_size: int) -> int:
    """`sending.freeze_audience` for a campaign with an A/B test: the sample split between
    the subjects in batches of one subject each, the rest in `held` batches (see the
    module's docstring). Marks the test as running and queues its decision. Returns the
    audience size; the caller commits."""
    ab = campaign.ab_test or {}
    k = len(ab["subjects"])
    percent = int(ab["sample_percent"])
    if is_pg(session):
        total = _freeze_pg(session, campaign, batch_size, k, percent)
    else:
        total = _freeze_small(session, campaign, batch_size, k, percent)
    decide_at = utcnow() + timedelta(minutes=int(ab["wait_minutes"]))
    campaign.ab_status, campaign.ab_winner, campaign.ab_decide_at = TESTING, None, decide_at
    session.flush()
    enqueue_after_commit(session, DECIDE_JOB, campaign.id, queue="default",
                         job_id=f"al-campaign-{campaign.id}-ab-decide", at=decide_at)
    return total


def _freeze_pg(session: Session, campaign: Campaign, batch_size: int, k: int,
               percent: int) -> int:
    """One statement, as the plain freeze: rank the audience at random, tag the first
    `percent` % with a subject (rank mod k), number each subject's batches and the rest's,
    then insert the batches (a data-modifying CTE) and the deliveries joined to them."""
    audience = campaign_audience(campaign).subquery()
    ranked = select(
        audience.c.id.label("sid"),
        (func.row_number().over(order_by=func.random()) - 1).label("r"),
        func.count().over().label("n"),
    ).cte("ab_ranked")
    tagged = select(
        ranked.c.sid,
        case((ranked.c.r * 100 < ranked.c.n * percent, ranked.c.r % k), else_=None)
        .label("v"),
    ).cte("ab_tagged")
    grouped = select(
        tagged.c.sid, tagged.c.v,
        ((func.row_number().over(partition_by=tagged.c.v, order_by=tagged.c.sid) - 1)
         // batch_size).label("g"),
    ).cte("ab_grouped")
    numbered = select(
        grouped.c.sid, grouped.c.v,
        (func.dense_rank().over(order_by=(grouped.c.v.asc().nulls_last(), grouped.c.g))
         - 1).label("seq"),
    ).cte("ab_aud")
    held_or_queued = case((numbered.c.v.is_(None), literal(BatchStatus.held.value)),
                          else_=literal(BatchStatus.queued.value))
    new_batches = (
        insert(Batch)
        .from_select(
            ["campaign_id", "seq", "variant", "status", "attempts", "message_id", "error",
             "size"],
            select(literal(campaign.id), numbered.c.seq, numbered.c.v, held_or_queued,
                   literal(0), literal(""), literal(""), func.count())
            .group_by(numbered.c.seq, numbered.c.v),
        )
        .returning(Batch.id, Batch.seq)
        .cte("ab_nb")
    )
    session.execute(
        insert(Delivery)
        .from_select(
            ["campaign_id", "batch_id", "subscriber_id", "variant", "status", "reason",
             "message_id", "event_status"],
            select(literal(campaign.id), new_batches.c.id, numbered.c.sid, numbered.c.v,
                   literal(DeliveryStatus.queued.value), literal(""), literal(""),
                   literal("")).join_from(numbered, new_batches,
                                          new_batches.c.seq == numbered.c.seq),
        )
        .add_cte(new_batches, nest_here=True)
    )
    return int(session.scalar(
        select(func.coalesce(func.sum(Batch.size), 0)).where(Batch.campaign_id == campaign.id)
    ) or 0)


def _freeze_small(session: Session, campaign: Campaign, batch_size: int, k: int,
                  percent: int) -> int:
    """The same split in Python (SQLite: the embedded mode, small lists)."""
    ids = list(session.scalars(select(campaign_audience(campaign).subquery().c.id)))
    random.SystemRandom().shuffle(ids)
    n = len(ids)
    groups: dict[int | None, list[int]] = {v: [] for v in range(k)}
    groups[None] = []
    for r, sid in enumerate(ids):
        groups[r % k if r * 100 < n * percent else None].append(sid)
    seq = 0
    for v, members in groups.items():
        members.sort()
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            batch = Batch(campaign_id=campaign.id, seq=seq, size=len(chunk), variant=v,
                          status=BatchStatus.held if v is None else BatchStatus.queued)
            session.add(batch)
            session.flush()
            session.execute(insert(Delivery), [
                {"campaign_id": campaign.id, "batch_id": batch.id, "subscriber_id": sid,
                 "variant": v, "status": DeliveryStatus.queued, "reason": "",
                 "message_id": "", "event_status": ""}
                for sid in chunk
            ])
            seq += 1
    return n


# ---------------------------------------------------------------- the figures


def variant_figures(session: Session, campaign: Campaign) -> list[dict[str, int]]:
    """Per subject of the test: sent, unique_opens, unique_clicks (the sample only)."""
    k = len((campaign.ab_test or {}).get("subjects") or [])
    figures = [{"sent": 0, "unique_opens": 0, "unique_clicks": 0} for _ in range(k)]
    if not k or not campaign.ab_status:
        return figures
    for v, sent in session.execute(
        select(Batch.variant, func.sum(Batch.sent))
        .where(Batch.campaign_id == campaign.id, Batch.variant.is_not(None))
        .group_by(Batch.variant)
    ):
        if v is not None and 0 <= v < k:
            figures[v]["sent"] = int(sent or 0)
    sample_batches = select(Batch.id).where(Batch.campaign_id == campaign.id,
                                            Batch.variant.is_not(None))
    names = {event: metric for metric, event in METRIC_EVENTS.items()}
    for v, event, count in session.execute(
        select(Delivery.variant, CampaignEventUnique.event, func.count())
        .join(CampaignEventUnique,
              (CampaignEventUnique.campaign_id == Delivery.campaign_id)
              & (CampaignEventUnique.recipient == cast(Delivery.subscriber_id, String)))
        .where(Delivery.campaign_id == campaign.id, Delivery.batch_id.in_(sample_batches),
               Delivery.variant.is_not(None),
               CampaignEventUnique.event.in_(list(names)))
        .group_by(Delivery.variant, CampaignEventUnique.event)
    ):
        if v is not None and 0 <= v < k:
            figures[v][names[event]] = int(count)
    return figures


def leader(figures: list[dict[str, int]], metric: str) -> int:
    """The index with the most of `metric`; ties go to the first."""
    best = 0
    for i, f in enumerate(figures):
        if f[metric] > figures[best][metric]:
            best = i
    return best


def summary(session: Session, campaign: Campaign) -> dict[str, Any] | None:
    """The test as the API and the admin show it (None without a test)."""
    ab = campaign.ab_test
    if not ab:
        return None
    figures = variant_figures(session, campaign)
    decide_at: datetime | None = campaign.ab_decide_at
    return {
        **ab,
        "status": campaign.ab_status or None,
        "variants": [{"subject": subject, **figure}
                     for subject, figure in zip(ab["subjects"], figures, strict=True)],
        "winner": campaign.ab_winner,
        "leader": leader(figures, ab["metric"]) if figures else None,
        "decide_at": decide_at.isoformat() if decide_at else None,
    }
