"""Read queries of the admin, kept out of the views (and shareable with the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from ..db import is_pg, utcnow
from ..models import (
    AuditRecord,
    Campaign,
    Delivery,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)

PAGE_SIZE = 50


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(column: Any, text: str) -> Any:
    return column.like(_escape_like(text) + "%", escape="\\")


@dataclass(frozen=True)
class SubscriberFilters:
    q: str = ""
    list_slug: str = ""
    status: str = ""
    state: str = ""
    locale: str = ""
    before: int | None = None  # keyset: only ids below this one

    def as_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for the next-page link)."""
        args = {
            "q": self.q, "list": self.list_slug, "status": self.status,
            "state": self.state, "lang": self.locale,
        }
        return {k: v for k, v in args.items() if v}


@dataclass
class Page:
    items: list[Any]
    next_before: int | None = None
    filters: dict[str, str] = field(default_factory=dict)


def _search_clause(q: str) -> Any:
    """Prefix match on the address, or on first/last name (case-insensitive)."""
    text = q.strip().lower()
    if "@" in text:
        return _prefix(Subscriber.email_key, text)
    parts = text.split()
    if len(parts) >= 2:
        return _prefix(func.lower(Subscriber.first_name), parts[0]) & _prefix(
            func.lower(Subscriber.last_name), " ".join(parts[1:])
        )
    return or_(
        _prefix(Subscriber.email_key, text),
        _prefix(func.lower(Subscriber.first_name), text),
        _prefix(func.lower(Subscriber.last_name), text),
    )


def subscriber_query(filters: SubscriberFilters) -> Select[Subscriber]:
    query = select(Subscriber)
    if filters.q.strip():
        query = query.where(_search_clause(filters.q))
    if filters.state:
        query = query.where(Subscriber.state == filters.state.upper())
    if filters.locale:
        query = query.where(Subscriber.locale == filters.locale)
    if filters.list_slug or filters.status:
        subs = select(Subscription.subscriber_id)
        if filters.list_slug:
            subs = subs.join(MailingList).where(MailingList.slug == filters.list_slug)
        if filters.status:
            subs = subs.where(Subscription.status == filters.status)
        query = query.where(Subscriber.id.in_(subs))
    return query


def search_subscribers(
    session: Session, filters: SubscriberFilters, page_size: int = PAGE_SIZE
) -> Page:
    """Newest first, keyset-paginated by id (stays fast however deep one pages)."""
    query = subscriber_query(filters).options(
        selectinload(Subscriber.subscriptions)
    )
    page = _keyset_page(session, query, Subscriber.id, filters.before, page_size)
    page.filters = filters.as_args()
    return page


def _keyset_page(
    session: Session, query: Select[Any], id_column: Any, before: int | None, page_size: int
) -> Page:
    """Newest first by id: the rows below `before`, and the id the next page starts below."""
    if before is not None:
        query = query.where(id_column < before)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(page_size + 1)))
    items = rows[:page_size]
    return Page(items=items, next_before=items[-1].id if len(rows) > page_size else None)


def subscriber_deliveries(
    session: Session, subscriber_id: int, limit: int = 100
) -> list[tuple[Delivery, Campaign]]:
    rows = session.execute(
        select(Delivery, Campaign)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return [(d, c) for d, c in rows]


def known_states(session: Session) -> list[str]:
    return [
        s for s in session.scalars(
            select(Subscriber.state).where(Subscriber.state != "").distinct()
            .order_by(Subscriber.state)
        )
    ]


@dataclass(frozen=True)
class DaySeries:
    days: list[date]
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)


def signups_per_day(session: Session, days: int = 90, today: date | None = None) -> DaySeries:
    """New subscribers per UTC day over the last `days` days, zeros included."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=utcnow().tzinfo)
    day = func.date(Subscriber.created_at)
    if is_pg(session):
        day = func.date(func.timezone("UTC", Subscriber.created_at))
    found: dict[str, int] = {
        str(d): n
        for d, n in session.execute(
            select(day, func.count()).where(Subscriber.created_at >= start).group_by(day)
        )
    }
    span = [first + timedelta(days=i) for i in range(days)]
    return DaySeries(days=span, counts=[found.get(d.isoformat(), 0) for d in span])


def recent_campaigns(session: Session, limit: int = 10) -> list[Campaign]:
    return list(
        session.scalars(
            select(Campaign).options(selectinload(Campaign.lists))
            .order_by(Campaign.created_at.desc(), Campaign.id.desc()).limit(limit)
        )
    )


def suppressions_page(session: Session, before: int | None, page_size: int = PAGE_SIZE) -> Page:
    return _keyset_page(session, select(Suppression), Suppression.id, before, page_size)


def audit_page(session: Session, before: int | None, page_size: int = PAGE_SIZE) -> Page:
    return _keyset_page(session, select(AuditRecord), AuditRecord.id, before, page_size)
