"""Streamed CSV export of a list's subscribers (CLI and API share it).

Constant memory: rows come from a server-side cursor (`yield_per`, PostgreSQL's
`stream_results`) and leave as text in blocks of a few hundred lines. The header is
known before the first row: the attribute columns are one `DISTINCT` over the JSON keys,
done by the database. The columns import back as they are (`csvfile` knows them), so an
export is also a backup that `actionlist import` takes.

Every CSV the service writes (exports and import reports, from the CLI, the API and the
admin) goes through `CsvWriter`, which quotes the cells a spreadsheet would run as a
formula (`csvfile.quote_formula`); the importer takes the quote off again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from ..models import Subscriber, Subscription, SubscriptionStatus
from .csvfile import ALIASES, EXPORT_ONLY, header_key, quote_formula

COLUMNS = [
    "email", "first_name", "last_name", "postal_code", "state", "language", "status",
    "subscribed_at", "confirmed_at", "unsubscribed_at",
]
_TAKEN = {alias for aliases in ALIASES.values() for alias in aliases} | EXPORT_ONLY
ROWS_PER_BLOCK = 500

_KEYS_SQL = {
    "postgresql": """
        SELECT DISTINCT k FROM subscribers s
        JOIN subscriptions t ON t.subscriber_id = s.id,
        LATERAL json_object_keys(CASE WHEN json_typeof(s.attributes) = 'object'
                                      THEN s.attributes ELSE '{}'::json END) AS k
        WHERE t.list_id = :list_id AND t.status IN :statuses""",
    "sqlite": """
        SELECT DISTINCT j.key FROM subscribers s
        JOIN subscriptions t ON t.subscriber_id = s.id,
        json_each(CASE WHEN json_type(s.attributes) = 'object'
                       THEN s.attributes ELSE '{}' END) AS j
        WHERE t.list_id = :list_id AND t.status IN :statuses""",
}


def statuses_or_all(statuses: Sequence[str]) -> list[SubscriptionStatus]:
    return [SubscriptionStatus(s) for s in statuses] or list(SubscriptionStatus)


def attribute_keys(session: Session, list_id: int, statuses: Sequence[str]) -> list[str]:
    dialect = session.get_bind().dialect.name
    query = text(_KEYS_SQL["postgresql" if dialect == "postgresql" else "sqlite"]).bindparams(
        bindparam("statuses", expanding=True)
    )
    keys = session.execute(
        query, {"list_id": list_id, "statuses": [s.value for s in statuses_or_all(statuses)]}
    ).scalars()
    return sorted(str(k) for k in keys)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def export_rows(session: Session, list_id: int, statuses: Sequence[str] = ()
                ) -> Iterator[list[str]]:
    """The header, then one row per subscription of the list, oldest subscriber first."""
    keys = attribute_keys(session, list_id, statuses)
    # An attribute whose name would read back as one of our columns gets a suffix.
    names = [f"{k} (attribute)" if header_key(k) in _TAKEN else k for k in keys]
    yield COLUMNS + names
    s, t = Subscriber, Subscription
    query = (
        select(s.email, s.first_name, s.last_name, s.postal_code, s.state, s.locale,
               t.status, t.created_at, t.confirmed_at, t.unsubscribed_at, s.attributes)
        .join(t, t.subscriber_id == s.id)
        .where(t.list_id == list_id, t.status.in_(statuses_or_all(statuses)))
        .order_by(s.id)
        .execution_options(yield_per=2000)
    )
    for row in session.execute(query):
        attributes = row.attributes if isinstance(row.attributes, dict) else {}
        yield [
            row.email, row.first_name, row.last_name, row.postal_code, row.state, row.locale,
            row.status.value, _iso(row.created_at), _iso(row.confirmed_at),
            _iso(row.unsubscribed_at),
            *(str(attributes.get(k, "")) for k in keys),
        ]


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


class CsvWriter:
    """`csv.writer` (RFC 4180, CRLF) whose cells no spreadsheet runs as a formula."""

    def __init__(self, out: _Writable) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow(["" if cell is None else quote_formula(str(cell)) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_blocks(rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """CSV text (`CsvWriter`) in blocks of a few hundred rows."""
    buffer = io.StringIO()
    writer = CsvWriter(buffer)
    pending = 0
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending >= ROWS_PER_BLOCK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()
