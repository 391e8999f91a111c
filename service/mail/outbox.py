"""OutboxTransport: writes one .eml file per recipient instead of sending (development)."""

from __future__ import annotations

import secrets
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

from .base import OutgoingMail, SendResult


def apply(text: str, substitutions: dict[str, str]) -> str:
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def send(self, mail: OutgoingMail) -> SendResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = secrets.token_urlsafe(16)
        for index, p in enumerate(mail.personalizations):
            msg = EmailMessage()
            msg["Subject"] = apply(mail.subject, p.substitutions)
            msg["From"] = formataddr((mail.from_name, mail.from_email))
            msg["To"] = formataddr((p.name, p.email))
            if mail.reply_to:
                msg["Reply-To"] = mail.reply_to
            msg["Date"] = formatdate(localtime=False)
            msg["Message-ID"] = make_msgid(domain="actionlist.local")
            for key, value in {**mail.headers, **p.headers}.items():
                msg[key] = value
            for key, value in {**mail.custom_args, **p.custom_args}.items():
                msg[f"X-Custom-Arg-{key}"] = value
            msg.set_content(apply(mail.text, p.substitutions))
            msg.add_alternative(apply(mail.html, p.substitutions), subtype="html")
            name = f"{time.time_ns()}-{message_id}-{index}.eml"
            (self.directory / name).write_bytes(bytes(msg))
        return SendResult(message_id=message_id)
