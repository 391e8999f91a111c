"""Read-only records: suppressions, the audit log, and the development outbox.

The outbox shows mails as sent, and their links are live: a preferences link in a
confirmation or campaign mail lets whoever holds it export and erase that person's data.
So, like the audit log, it is for admins only (the role that may erase anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from flask import abort, render_template

from .. import config, db
from ..models import Role
from . import queries
from .access import staff_required
from .blueprint import bp
from .params import id_arg

OUTBOX_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}\.eml$")
OUTBOX_PAGE = 200


def _before() -> int | None:
    return id_arg("before")


@bp.get("/suppressions")
@staff_required(Role.viewer)
def suppressions() -> Any:
    return render_template(
        "admin/suppressions.html", page=queries.suppressions_page(db.session(), _before())
    )


@bp.get("/audit")
@staff_required(Role.admin)
def audit_log() -> Any:
    return render_template("admin/audit.html", page=queries.audit_page(db.session(), _before()))


def outbox_active() -> bool:
    return not config.settings().sendgrid_api_key


@bp.app_context_processor
def _outbox_flag() -> dict[str, Any]:
    return {"outbox_active": outbox_active}


@dataclass(frozen=True)
class OutboxEntry:
    name: str
    at: datetime
    subject: str
    to: str


def _outbox_dir() -> Path:
    if not outbox_active():
        abort(404, description="The outbox is only used when no SendGrid key is configured.")
    return Path(config.settings().outbox_dir)


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)
    return message


@bp.get("/outbox")
@staff_required(Role.admin)
def outbox() -> Any:
    directory = _outbox_dir()
    files = sorted(directory.glob("*.eml"), key=lambda p: p.name, reverse=True)
    entries = []
    for path in files[:OUTBOX_PAGE]:
        message = _parse(path)
        entries.append(
            OutboxEntry(
                name=path.name,
                at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
                subject=str(message.get("Subject", "")),
                to=str(message.get("To", "")),
            )
        )
    return render_template("admin/outbox.html", entries=entries, total=len(files))


@bp.get("/outbox/<name>")
@staff_required(Role.admin)
def outbox_message(name: str) -> Any:
    directory = _outbox_dir()
    if not OUTBOX_NAME.match(name):
        abort(404)
    path = directory / name
    if not path.is_file():
        abort(404)
    message = _parse(path)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    return render_template(
        "admin/outbox_message.html",
        name=name,
        subject=str(message.get("Subject", "")),
        headers=[(k, str(v)) for k, v in message.items()],
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
    )
