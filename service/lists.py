"""Reading mailing lists: public ones for people, all of them for staff, and their sizes.

Signup, the public form, the preference centre, imports, campaigns, the API and the
admin all look lists up here, so "public" and "by slug" mean the same everywhere, and
the signup's per-process cache of public lists is dropped by the module that fills it.
Writing lists (the admin's form) is not done here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import MailingList, Subscription

# How long a web process trusts what it last read of the public lists. Every signup
# names lists, and reading them was a quarter of a signup's time; a list made private
# (or renamed) is still accepted by a process for at most this long after the change.
# An unknown slug is always looked up again, so a new list works at once.
PUBLIC_LISTS_SECONDS = 5.0
# Where a process keeps that copy: in its app, so two apps (tests) never share one.
_CACHE_KEY = "public_lists"


@dataclass(frozen=True)
class ListRef:
    """A public list a signup names."""

    id: int
    slug: str


@dataclass
class _PublicListCache:
    read_at: float = float("-inf")
    by_slug: dict[str, ListRef] = field(default_factory=dict)


def public_list_refs(session: Session, slugs: list[str]) -> dict[str, ListRef]:
    """The public lists among `slugs`, by slug (read at most every few seconds)."""
    cache: _PublicListCache = current_app.extensions.setdefault(_CACHE_KEY, _PublicListCache())
    now = time.monotonic()
    if now - cache.read_at > PUBLIC_LISTS_SECONDS or any(s not in cache.by_slug for s in slugs):
        cache.by_slug = {
            slug: ListRef(int(list_id), slug) for list_id, slug in session.execute(
                select(MailingList.id, MailingList.slug).where(MailingList.public))
        }
        cache.read_at = now
    return {slug: cache.by_slug[slug] for slug in slugs if slug in cache.by_slug}


def forget_public_lists() -> None:
    """Drop this process's copy of the public lists (after a list is created or edited)."""
    current_app.extensions.pop(_CACHE_KEY, None)


def public_lists(session: Session, slugs: list[str] | None = None) -> list[MailingList]:
    """The public lists (those among `slugs` if given), oldest first; never cached."""
    query = select(MailingList).where(MailingList.public).order_by(MailingList.id)
    if slugs:
        query = query.where(MailingList.slug.in_(slugs))
    return list(session.scalars(query))


def all_lists(session: Session) -> list[MailingList]:
    """Every list, public or not, oldest first (staff and API views)."""
    return list(session.scalars(select(MailingList).order_by(MailingList.id)))


def list_by_slug(session: Session, slug: str) -> MailingList | None:
    if "\x00" in slug:  # names no list (and PostgreSQL cannot compare it)
        return None
    return session.scalars(select(MailingList).where(MailingList.slug == slug)).first()


def lists_by_slugs(session: Session, slugs: list[str]) -> list[MailingList]:
    """The lists among `slugs` (unknown slugs are left out; the caller says so)."""
    slugs = [slug for slug in slugs if "\x00" not in slug]
    return list(session.scalars(select(MailingList).where(MailingList.slug.in_(slugs))))


def lists_by_ids(session: Session, list_ids: list[int]) -> list[MailingList]:
    """The lists among `list_ids`, oldest first."""
    if not list_ids:
        return []
    return list(session.scalars(
        select(MailingList).where(MailingList.id.in_(list_ids)).order_by(MailingList.id)))


def list_slugs(session: Session) -> list[str]:
    """Every list's slug, alphabetically (to tell someone what exists)."""
    return list(session.scalars(select(MailingList.slug).order_by(MailingList.slug)))


def list_counts(session: Session) -> dict[int, dict[str, int]]:
    """Subscriptions per list and status; a list without any is absent."""
    rows = session.execute(
        select(Subscription.list_id, Subscription.status, func.count()).group_by(
            Subscription.list_id, Subscription.status
        )
    )
    counts: dict[int, dict[str, int]] = {}
    for list_id, status, n in rows:
        counts.setdefault(list_id, {"pending": 0, "confirmed": 0, "unsubscribed": 0})[
            str(status)
        ] = n
    return counts
