"""Files and database snapshots for the import tests."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from service import db
from service.models import (
    ConfirmationMail,
    ConsentRecord,
    MailingList,
    Subscriber,
    Subscription,
)

HEADER = ["E-mail Address", "First Name", "Surname", "ZIP", "Language", "Member Since"]


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] | None = None,
              encoding: str = "utf-8", bom: bool = False, newline: str = "\r\n") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header or HEADER)
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def people(n: int, *, start: int = 0, invalid_every: int = 0) -> list[list[str]]:
    """n rows; every `invalid_every`-th one has a broken address."""
    rows = []
    for i in range(start, start + n):
        email = f"person{i}@example{i % 7}.org"
        if invalid_every and i % invalid_every == invalid_every - 1:
            email = f"person{i}.example.org"  # no @
        rows.append([email, f"First{i}", f"Last{i}", f"{94100 + i % 50:05d}",
                     "es" if i % 4 == 0 else "en", f"20{10 + i % 15}"])
    return rows


def list_id(slug: str) -> int:
    return int(db.session().scalars(select(MailingList.id).where(MailingList.slug == slug)).one())


def count(model: Any) -> int:
    return int(db.session().scalar(select(func.count()).select_from(model)) or 0)


def snapshot() -> dict[str, Any]:
    """Everything an import may write, to compare before and after a second run."""
    session = db.session()
    session.expire_all()
    return {
        "subscribers": sorted(
            tuple(r) for r in session.execute(select(
                Subscriber.id, Subscriber.email, Subscriber.email_key, Subscriber.first_name,
                Subscriber.last_name, Subscriber.postal_code, Subscriber.state,
                Subscriber.locale, Subscriber.updated_at))
        ),
        "attributes": sorted(
            (i, sorted(a.items())) for i, a in session.execute(
                select(Subscriber.id, Subscriber.attributes))
        ),
        "subscriptions": sorted(
            tuple(r) for r in session.execute(select(
                Subscription.subscriber_id, Subscription.list_id, Subscription.status,
                Subscription.updated_at, Subscription.confirmed_at))
        ),
        "consent": count(ConsentRecord),
        "mails": count(ConfirmationMail),
    }


def run_cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
    return result
