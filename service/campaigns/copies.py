"""A campaign read on the web: one recipient's own copy ("view in browser") and the public
archive of the campaigns staff chose to publish (`Campaign.archive`), with its Atom feed.

- `personal_copy` answers `GET /view/<token>`: the mail exactly as that person got it
  (their language, name and own unsubscribe and preference links), from the view token
  every campaign mail carries (`tokens.view_token`). The token must name a recipient of
  the campaign (a delivery row): after an erasure the row no longer names the person,
  so the link shows nothing, even if a new subscriber later gets the same id.
- `archived`, `archived_campaigns`, `archive_entry` and `atom_feed` answer `/archive…`:
  only sent campaigns marked `archive`, rendered by `render.public_copy` without any
  person or personal link (`{{ first_name }}` shows its fallback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import config
from ..models import Campaign, CampaignStatus, Delivery, Subscriber
from ..tokens import TokenError, preferences_url, read_view_token, unsubscribe_url, view_token
from .render import cached_variant, public_copy, variant_locale

ARCHIVE_PAGE = 50  # campaigns listed on /archive and in the feed, newest first


@dataclass(frozen=True)
class PersonalCopy:
    locale: str
    subject: str  # text
    body_html: str  # the inside of the mail's <body> (its styles are inline)


_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


def personal_copy(session: Session, token: str) -> PersonalCopy | None:
    """The recipient's own copy the view token names, or None (no such recipient any
    more, or the campaign is gone). TokenError for a bad token."""
    campaign_id, subscriber_id = read_view_token(token)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or subscriber_id == 0:
        return None
    received = session.scalar(select(Delivery.id).where(
        Delivery.campaign_id == campaign_id, Delivery.subscriber_id == subscriber_id))
    subscriber = session.get(Subscriber, subscriber_id) if received is not None else None
    if subscriber is None:
        return None
    conf = config.settings()
    variant = cached_variant(campaign, variant_locale(subscriber.locale))
    list_ids = sorted(ml.id for ml in campaign.lists)
    subs = variant.substitutions({
        "first_name": subscriber.first_name, "last_name": subscriber.last_name,
        "email": subscriber.email, "state": subscriber.state,
        "postal_code": subscriber.postal_code,
        "unsubscribe_url": unsubscribe_url(subscriber.id, list_ids, campaign.id, conf),
        "preferences_url": preferences_url(subscriber.id, conf),
        "view": view_token(campaign.id, subscriber.id, conf).split(".", 1)[1],
    })
    html, subject = variant.html, variant.subject
    for key, value in subs.items():
        html = html.replace(key, value)
        subject = subject.replace(key, value)
    body = _BODY.search(html)
    return PersonalCopy(variant.locale, subject, body.group(1) if body else html)


def archived(session: Session, campaign_id: int) -> Campaign | None:
    """The campaign if it is in the public archive (sent and marked `archive`)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not campaign.archive or campaign.status != CampaignStatus.sent:
        return None
    return campaign


def archived_campaigns(session: Session) -> list[Campaign]:
    """The archive, newest first."""
    return list(session.scalars(
        select(Campaign).where(Campaign.archive, Campaign.status == CampaignStatus.sent)
        .order_by(Campaign.finished_at.desc(), Campaign.id.desc()).limit(ARCHIVE_PAGE)))


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    locale: str  # the language shown: the visitor's where the campaign has it
    subject: str
    body_html: str
    sent_at: datetime


def _shown_locale(campaign: Campaign, locale: str) -> str:
    variant = (campaign.variants or {}).get(locale) if locale != "en" else None
    return locale if isinstance(variant, dict) and variant.get("body") else "en"


def sent_at(campaign: Campaign) -> datetime:
    when = campaign.finished_at or campaign.started_at or campaign.created_at
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_entries: dict[tuple[int, str, str], ArchiveEntry] = {}


def archive_entry(campaign: Campaign, locale: str) -> ArchiveEntry:
    """The campaign as the archive shows it to a visitor reading `locale` (rendered once
    per process and language while the campaign is unchanged)."""
    shown = _shown_locale(campaign, locale)
    key = (campaign.id, campaign.updated_at.isoformat(), shown)
    entry = _entries.get(key)
    if entry is None:
        subject, body_html = public_copy(campaign, shown)
        if len(_entries) > 4 * ARCHIVE_PAGE:
            _entries.clear()
        entry = _entries[key] = ArchiveEntry(campaign.id, shown, subject, body_html,
                                             sent_at(campaign))
    return entry


def atom_feed(campaigns: list[Campaign], locale: str, title: str) -> bytes:
    """The archive as an Atom feed: one entry per campaign with its public copy."""
    base = config.settings().public_url
    feed = FeedGenerator()
    feed.id(f"{base}/archive.atom")
    feed.title(title)
    feed.link(href=f"{base}/archive", rel="alternate")
    feed.link(href=f"{base}/archive.atom", rel="self")
    feed.language(locale)
    entries = [archive_entry(c, locale) for c in campaigns]
    feed.updated(entries[0].sent_at if entries else datetime(2000, 1, 1, tzinfo=UTC))
    for entry in reversed(entries):  # feedgen puts the last added first
        item = feed.add_entry()
        item.id(f"{base}/archive/{entry.id}")
        item.title(entry.subject or f"#{entry.id}")
        item.link(href=f"{base}/archive/{entry.id}", rel="alternate")
        item.updated(entry.sent_at)
        item.published(entry.sent_at)
        item.content(entry.body_html, type="html")
    return bytes(feed.atom_str(pretty=True))


__all__ = ["ArchiveEntry", "PersonalCopy", "TokenError", "archive_entry", "archived",
           "archived_campaigns", "atom_feed", "personal_copy", "sent_at"]
