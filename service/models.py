"""The data model: who subscribed to what, with which consent; campaigns and deliveries.

Enums are stored as short strings (portable between SQLite and PostgreSQL); their member
names are the stored values, so they are lower-case on purpose.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, utcnow


def new_session_token() -> str:
    """A fresh random staff session token (see `User.session_token`)."""
    return secrets.token_urlsafe(24)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class SubscriberStatus(enum.StrEnum):
    active = "active"
    bounced = "bounced"
    complained = "complained"


class SubscriptionStatus(enum.StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    unsubscribed = "unsubscribed"


class Role(enum.StrEnum):
    viewer = "viewer"
    editor = "editor"
    campaigner = "campaigner"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class CampaignKind(enum.StrEnum):
    alert = "alert"
    newsletter = "newsletter"


class ContentFormat(enum.StrEnum):
    markdown = "markdown"
    html = "html"


class CampaignStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sending = "sending"
    paused = "paused"
    sent = "sent"
    cancelled = "cancelled"
    failed = "failed"


class BatchStatus(enum.StrEnum):
    # `held`: the rest of an A/B-tested campaign's audience, waiting for the winner
    # (campaigns.abtest); it becomes `queued` when the test is decided.
    held = "held"
    queued = "queued"
    sending = "sending"
    done = "done"
    failed = "failed"


class DeliveryStatus(enum.StrEnum):
    queued = "queued"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


class SuppressionReason(enum.StrEnum):
    bounce = "bounce"
    complaint = "complaint"
    erased = "erased"
    manual = "manual"
    soft_bounce = "soft_bounce"


class Subscriber(Base):
    __tablename__ = "subscribers"
    # Prefix search of the admin (migration 0500): LIKE 'abc%' on address and names. On
    # PostgreSQL the address index carries the id too (migration 2600), so that an
    # audience count finds a suppressed address's subscriber from the index alone.
    __table_args__ = (
        Index(
            "ix_subscribers_email_key_prefix",
            "email_key",
            postgresql_ops={"email_key": "varchar_pattern_ops"},
            postgresql_include=["id"],
        ),
        # The few who are not active (bounced, complained, unsubscribed everywhere): what
        # an audience count subtracts (migration 2000).
        Index("ix_subscribers_not_active", "id",
              postgresql_where=text("status <> 'active'"),
              sqlite_where=text("status <> 'active'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # `email` keeps the normalised form for display; `email_key` (lower-cased) is unique,
    # so Alice@Example.org and alice@example.org are one person.
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    state: Mapped[str] = mapped_column(String(2), default="", index=True)
    # County name as the ZIP dataset spells it ("Kings County"), with `state` it names one
    # county; IANA time zone of the postal code ("" when unknown). Migration 1100.
    county: Mapped[str] = mapped_column(String(100), default="", server_default="", index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    locale: Mapped[str] = mapped_column(String(5), default="en")
    status: Mapped[SubscriberStatus] = mapped_column(default=SubscriberStatus.active)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )
    consent_records: Mapped[list[ConsentRecord]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ConsentRecord.id",
    )
    tag_rows: Mapped[list[SubscriberTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="SubscriberTag.tag"
    )


class SubscriberTag(Base):
    """One tag on one subscriber ("volunteer"). A row per tag, not a JSON list, so that a
    segment's `tags_any` / `tags_none` is an indexed semi-join on both databases."""

    __tablename__ = "subscriber_tags"
    __table_args__ = (Index("ix_subscriber_tags_tag", "tag", "subscriber_id"),)

    subscriber_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


# Case-insensitive name prefix search (migration 0500).
Index("ix_subscribers_first_name_prefix", func.lower(Subscriber.first_name))
Index("ix_subscribers_last_name_prefix", func.lower(Subscriber.last_name))
# Segments on attributes (migration 1600, PostgreSQL only): `attributes` is JSON, and a
# segment's `{"cd": ["NY-10"]}` asks `attributes::jsonb @> '{"cd": "NY-10"}'`, which this
# GIN index on the expression answers (jsonb_path_ops: containment only, a third of the
# size of the default operator class).
Index(
    "ix_subscribers_attributes_gin",
    cast(Subscriber.attributes, JSONB),
    postgresql_using="gin",
    postgresql_ops={"anon_1": "jsonb_path_ops"},
).ddl_if(dialect="postgresql")


class MailingList(Base):
    __tablename__ = "mailing_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name_en: Mapped[str] = mapped_column(String(200))
    name_es: Mapped[str] = mapped_column(String(200), default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    description_es: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The welcome mail sent once to each person who confirms this list through the public
    # link: {"en": {"subject": ..., "body": ...}, "es": {...}} (Markdown templates);
    # empty: no welcome (migration 1300).
    welcome: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    def welcome_for(self, locale: str) -> dict[str, str] | None:
        """The welcome in `locale`, else in English, else None (no welcome)."""
        for lang in (locale, "en"):
            content = (self.welcome or {}).get(lang)
            if isinstance(content, dict) and content.get("subject") and content.get("body"):
                return {"locale": lang, "subject": str(content["subject"]),
                        "body": str(content["body"])}
        return None

    def name_for(self, locale: str) -> str:
        return (self.name_es if locale == "es" else "") or self.name_en

    def description_for(self, locale: str) -> str:
        return (self.description_es if locale == "es" else "") or self.description_en


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id"),
        # With the subscriber: list counts and membership checks read only the index.
        Index("ix_subscriptions_list_status_subscriber", "list_id", "status", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    status: Mapped[SubscriptionStatus] = mapped_column(default=SubscriptionStatus.pending)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[MailingList] = relationship(lazy="joined", innerjoin=True)


class WelcomeMail(Base):
    """The welcome of one list to one person: claimed (inserted) before it is sent, so the
    unique key lets it go out at most once, even if its job runs twice or dies after
    sending (migration 1300)."""

    __tablename__ = "welcome_mails"
    __table_args__ = (UniqueConstraint("subscriber_id", "list_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), index=True)
    locale: Mapped[str] = mapped_column(String(5), default="en")
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "claimed" until the transport answers, then "sent <message id>" or "failed: …".
    result: Mapped[str] = mapped_column(String(200), default="claimed")


class ConfirmationMail(Base):
    """One confirmation mail queued for an address: the per-address throttle counts these.

    A signup's row is its mail's queue entry too: the workers' watch pass sends the rows
    that are `queued` and due (`not_before`), see `subscriptions.confirmations`. Import
    batches and preference-link mails have jobs of their own and leave `not_before` empty.
    """

    __tablename__ = "confirmation_mails"
    __table_args__ = (
        Index("ix_confirmation_mails_subscriber_at", "subscriber_id", "at"),
        Index("ix_confirmation_mails_due", "not_before",
              postgresql_where=text("result = 'queued'"),
              sqlite_where=text("result = 'queued'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # Sorted list ids the mail asked to confirm, e.g. "1,2": a repeat within the
    # interval is throttled, a different list is not.
    list_ids: Mapped[str] = mapped_column(String(200), default="")
    result: Mapped[str] = mapped_column(String(200), default="queued")
    # When the watch pass may send it (again): set at signup, moved on by each attempt.
    not_before: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class ConsentRecord(Base):
    """Append-only ledger: every change of a subscription, with its evidence."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    source: Mapped[str] = mapped_column(String(500), default="")
    endpoint: Mapped[str] = mapped_column(String(100), default="")
    consent_text_version: Mapped[str] = mapped_column(String(40), default="")
    actor: Mapped[str] = mapped_column(String(200), default="subscriber")
    note: Mapped[str] = mapped_column(Text, default="")

    subscriber: Mapped[Subscriber] = relationship(back_populates="consent_records")
    mailing_list: Mapped[MailingList | None] = relationship()


class Suppression(Base):
    """Addresses never to be mailed or silently re-added.

    `email_hash` is an HMAC of the normalised, lower-cased address (see
    `service.subscribers.email_hash`); `email` is kept for bounces and complaints so
    staff can read it, and emptied for erasures.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    reason: Mapped[SuppressionReason]
    source: Mapped[str] = mapped_column(String(100), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(default=Role.viewer)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of the id every staff session (and remember cookie) carries: replacing it on
    # sign-out, deactivation or a password change ends those sessions server-side.
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    # Two-factor authentication (service.twofactor): the Fernet-encrypted TOTP secret, set
    # while enrolling and kept when confirmed (totp_enabled_at); the last time step a code
    # was accepted for, so that no code works twice.
    totp_secret: Mapped[str | None] = mapped_column(String(300))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None]

    # Flask-Login protocol.
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the current session token."""
        return f"{self.id}:{self.session_token}"


class StaffRecoveryCode(Base):
    """A one-time code that replaces a TOTP code (a lost phone); stored as its SHA-256."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    role: Mapped[Role]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditRecord(Base):
    """Who did what to which object, and when (staff actions)."""

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


campaign_lists = Table(
    "campaign_lists",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("list_id", ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True),
)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[CampaignKind]
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    format: Mapped[ContentFormat] = mapped_column(default=ContentFormat.markdown)
    # {"es": {"subject": ..., "body": ...}}
    variants: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The segment's JSON (`campaigns.segments`). With `segment_id` the campaign follows
    # that saved segment until sending starts; the freeze then copies the saved
    # segment's definition here, so `segment` is always what the audience was frozen
    # with. No foreign key: deleting a saved segment is refused while a draft or a
    # scheduled campaign uses it and detaches the others (`campaigns.saved`).
    segment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    segment_id: Mapped[int | None] = mapped_column(Integer, default=None)
    source_code: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[CampaignStatus] = mapped_column(default=CampaignStatus.draft, index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    send_at: Mapped[datetime | None]
    # Local-hour delivery and the send-rate cap (migration 1800, `campaigns.localtime`,
    # `campaigns.ratecap`): "YYYY-MM-DDTHH:MM" read in each recipient's own time zone
    # ("" = not a local-hour send), and at most this many mails per minute (None = no cap).
    send_at_local: Mapped[str] = mapped_column(String(16), default="", server_default="")
    max_per_minute: Mapped[int | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Shown in the public archive (/archive, /archive.atom) once sent (migration 1300).
    archive: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A/B subject test (campaigns.abtest, migration 1500): the set-up
    # {"subjects", "sample_percent", "metric", "wait_minutes"} or None; once sending,
    # `ab_status` is "testing" then "decided" (with `ab_winner`, an index of subjects),
    # and the automatic decision is due at `ab_decide_at`.
    ab_test: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    ab_status: Mapped[str] = mapped_column(String(10), default="", server_default="")
    ab_winner: Mapped[int | None]
    ab_decide_at: Mapped[datetime | None]
    # The call to action (migration 1400): clicks on it are the campaign's "actions".
    action_url: Mapped[str] = mapped_column(String(2000), default="", server_default="")

    lists: Mapped[list[MailingList]] = relationship(secondary=campaign_lists)


class SavedSegment(Base):
    """A named segment staff keep to reuse (`POST /api/v1/segments`)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    segment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Batch(Base):
    """A slice of a campaign's frozen audience, claimed and sent as one SendGrid request."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("campaign_id", "seq"),
        Index("ix_batches_campaign_status", "campaign_id", "status"),
        Index("ix_batches_status_claimed", "status", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    seq: Mapped[int]
    status: Mapped[BatchStatus] = mapped_column(default=BatchStatus.queued)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    message_id: Mapped[str] = mapped_column(String(100), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    # How many deliveries the batch holds and how many of them are sent, failed or
    # skipped: updated in the same transaction as those deliveries, so a campaign's
    # counts are a sum over its batches (migration 0800).
    size: Mapped[int] = mapped_column(default=0, server_default="0")
    sent: Mapped[int] = mapped_column(default=0, server_default="0")
    failed: Mapped[int] = mapped_column(default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(default=0, server_default="0")
    # The A/B subject this batch's recipients get (an index of the campaign's
    # `ab_test.subjects`): set for the test's sample; NULL for a campaign without a test
    # and for the rest of the audience, which gets the winner (`campaigns.ab_winner`).
    variant: Mapped[int | None] = mapped_column(SmallInteger)
    # Local-hour delivery (migration 1800): the time zone the batch's recipients share
    # and the moment it may go (None: at once). A batch job that fires early claims
    # nothing; the recovery watch gives a due batch without a job one.
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    not_before: Mapped[datetime | None]
    # How often the batch was given back because its campaign (or the whole service) had
    # reached its send-rate cap: such a claim is not an error (`attempts - deferrals`
    # is what pauses a campaign after too many errors).
    deferrals: Mapped[int] = mapped_column(default=0, server_default="0")


class Delivery(Base):
    """One audience member of one campaign: the per-recipient ledger.

    No foreign keys (migration 0700): freezing an audience inserts every recipient in one
    statement, and PostgreSQL's per-row key checks were almost two thirds of its time.
    The ids are written only by that freeze, from rows it just read or created; erasing
    a subscriber sets `subscriber_id` to NULL itself (`subscriptions.gdpr.erase`).

    No index covers the columns a send changes (status, sent_at, message_id, reason),
    and on PostgreSQL the table keeps 60 % of each page free (fillfactor 40, migration
    0800): marking a batch sent is then a heap-only update that touches no index.
    Counts come from the batches' counters, not from an index on `status`. A person's
    deliveries are found through the (campaign_id, subscriber_id) key, joined from
    `campaigns`: every index is paid for by each row a freeze inserts.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        Index("ix_deliveries_batch", "batch_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int | None] = mapped_column(BigId)
    # NULL once the subscriber is erased: the row still counts, the person is gone.
    subscriber_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[DeliveryStatus] = mapped_column(default=DeliveryStatus.queued)
    reason: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(100), default="")
    sent_at: Mapped[datetime | None]
    # Last event seen from the Event Webhook: delivered, bounce, dropped, ...
    event_status: Mapped[str] = mapped_column(String(20), default="")
    # The A/B subject this recipient of the test's sample got (as its batch's `variant`);
    # NULL without a test and for the rest of the audience (they get the winner).
    variant: Mapped[int | None] = mapped_column(SmallInteger)


class WebhookBatch(Base):
    """One signed Event Webhook request, stored as it came and applied later by a job.

    The request only verifies, parses (to refuse a malformed body) and stores the body
    once; the job splits it into events, drops the ones seen before and applies the rest
    in set-based statements, then deletes the batch in the same transaction. So a row
    here is work still to do. `body_hash` (SHA-256 of the exact bytes) makes a batch that
    SendGrid posts again while the first copy still waits a no-op.
    """

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    events: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEventKey(Base):
    """The keys of one Event Webhook event already applied: what deduplicates SendGrid's
    re-deliveries (no payload, no address is kept here).

    `dedup_key` hashes the event's `sg_event_id` (it is the content key when the event has
    none); `content_key` hashes message id + event + timestamp + address (+ url), because
    SendGrid sometimes re-sends an event under a new id. Both are 16 bytes, the event's
    timestamp first (`ingest.content_key`), and both are unique (two indexes, no surrogate
    id: a storm inserts millions): an event whose keys are already here is a duplicate and
    changes nothing.
    """

    __tablename__ = "webhook_event_keys"
    # Pruning by age (`ingest.prune_keys`): BRIN on PostgreSQL, as keys come in time order.
    __table_args__ = (Index("ix_webhook_event_keys_received_at", "received_at",
                            postgresql_using="brin"),)

    dedup_key: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    content_key: Mapped[bytes] = mapped_column(LargeBinary(16), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignEventStat(Base):
    """Event counts of a campaign per UTC hour (from the event's own timestamp)."""

    __tablename__ = "campaign_event_stats"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


# Unique markers besides "open" and "click": a click on the campaign's action URL, a hard
# bounce, a spam report (the circuit breaker counts the last two).
UNIQUE_ACTION = "action"
UNIQUE_HARD_BOUNCE = "hard_bounce"
UNIQUE_SPAM_REPORT = "spamreport"


class CampaignEventUnique(Base):
    """Marks that one recipient did `event` (open, click, action, hard_bounce, spamreport)
    for a campaign: unique counts."""

    __tablename__ = "campaign_event_uniques"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The subscriber id from custom_args, or a hash when the event names none.
    recipient: Mapped[str] = mapped_column(String(64), primary_key=True)


class CampaignBreakdown(Base):
    """A campaign's figures per subscriber locale or state (migration 1400), kept by the
    webhook job as it applies events: `dimension` is "locale" or "state", `key` the
    subscriber's value ("" when unknown)."""

    __tablename__ = "campaign_breakdowns"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    dimension: Mapped[str] = mapped_column(String(10), primary_key=True)
    key: Mapped[str] = mapped_column(String(10), primary_key=True)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_opens: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    actions: Mapped[int] = mapped_column(BigInteger, default=0)


class CampaignLinkStat(Base):
    """Clicks per link of a campaign (`url_hash` = sha256 of the URL)."""

    __tablename__ = "campaign_link_stats"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    url_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)


class SoftBounce(Base):
    """A `blocked` or `deferred` event for an address; N in a window suppress it."""

    __tablename__ = "soft_bounces"
    __table_args__ = (Index("ix_soft_bounces_email_hash_at", "email_hash", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Import(Base):
    """One CSV upload imported into a list by an RQ job (service.imports).

    Progress and counts are written in the same transaction as each chunk of rows, so
    they always match what is in the database, and a retried job resumes after
    `processed_rows` (physical lines after the header).
    """

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed: Mapped[bool] = mapped_column(default=False)
    consent_note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ImportStatus] = mapped_column(default=ImportStatus.queued)
    error: Mapped[str] = mapped_column(Text, default="")
    total_rows: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    rows_created: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_skipped: Mapped[int] = mapped_column(default=0)
    rows_refused: Mapped[int] = mapped_column(default=0)
    rows_invalid: Mapped[int] = mapped_column(default=0)
    mails_queued: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    mailing_list: Mapped[MailingList] = relationship(lazy="joined", innerjoin=True)


class ImportPart(Base):
    """The uploaded file, in pieces of about 1 MB: any worker can read it back."""

    __tablename__ = "import_parts"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportProblem(Base):
    """A row of an import that was not imported: invalid, or refused (suppressed, erased…)."""

    __tablename__ = "import_problems"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    line: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(254), default="")
    reason: Mapped[str] = mapped_column(String(300))


class OutgoingEndpoint(Base):
    """An organisation's receiver of outgoing webhooks (their CRM, `service/outgoing`).

    `secret` is stored encrypted (Fernet, key derived from the signing keys) and shown
    once, when the endpoint is made. `failing_since` is the first failed attempt since the
    last delivered one; after `WEBHOOKS_DISABLE_AFTER_SECONDS` of failures the endpoint is
    disabled (`disabled_at`, `disabled_reason`) and its undelivered events wait for it.
    """

    __tablename__ = "outgoing_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(300))
    # The event types it receives: {"types": ["subscriber.confirmed", ...]}
    events: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def event_types(self) -> list[str]:
        return [str(t) for t in (self.events or {}).get("types", [])]


class OutgoingEvent(Base):
    """Something that happened, written in the same transaction as the change itself.

    `public_id` is the `id` receivers see: the same on every attempt and every endpoint,
    so they can deduplicate. `data` is exactly the event's `data` object.
    """

    __tablename__ = "outgoing_events"
    # Pruning by age (`delivery.prune`): BRIN on PostgreSQL, as events come in time order.
    __table_args__ = (Index("ix_outgoing_events_created_at", "created_at",
                            postgresql_using="brin"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutgoingDelivery(Base):
    """The outbox: one row per (event, endpoint) until that endpoint has taken the event.

    A delivery job claims the row (`claimed_until`, a lease) with a conditional UPDATE,
    posts, and records the attempt; the sweep gives a job to any pending row that is due
    and unclaimed, so a job lost with its worker or with Redis costs a delay, never an event.
    """

    __tablename__ = "outgoing_deliveries"
    __table_args__ = (
        Index("ix_outgoing_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_outgoing_deliveries_endpoint", "endpoint_id", "id"),
        UniqueConstraint("event_id", "endpoint_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("outgoing_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("outgoing_endpoints.id", ondelete="CASCADE"))
    # pending → delivered
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    event: Mapped[OutgoingEvent] = relationship()


class OutgoingAttempt(Base):
    """One POST to an endpoint: the delivery log shown to staff."""

    __tablename__ = "outgoing_attempts"
    __table_args__ = (Index("ix_outgoing_attempts_endpoint", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("outgoing_deliveries.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("outgoing_endpoints.id", ondelete="CASCADE"))
    number: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(default=0)
