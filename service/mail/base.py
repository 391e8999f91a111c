"""The Transport interface and the message shape every transport accepts.

A message is modelled on SendGrid's v3 request: one body with `substitutions`
placeholders and up to 1000 personalizations, each with its own recipient, values,
headers and custom_args. A transactional mail is simply a message with one
personalization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Personalization:
    email: str
    name: str = ""
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)


@dataclass
class OutgoingMail:
    subject: str
    html: str
    text: str
    from_email: str
    personalizations: list[Personalization]
    from_name: str = ""
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)


@dataclass
class SendResult:
    message_id: str


class MailError(Exception):
    """Base class of transport failures."""


class TransientMailError(MailError):
    """Worth retrying later (429, 5xx, timeouts, connection resets)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentMailError(MailError):
    """Retrying the same request will fail again (400, 413).

    `bad_personalizations` holds the indexes SendGrid named in its error fields, so the
    caller can drop those recipients and resend the rest.
    """

    def __init__(self, message: str, *, bad_personalizations: dict[int, str] | None = None):
        super().__init__(message)
        self.bad_personalizations = bad_personalizations or {}


class AuthMailError(PermanentMailError):
    """401/403: the key is wrong or the sender is not verified; nothing will go out."""


class Transport(Protocol):
    name: str

    def send(self, mail: OutgoingMail) -> SendResult:
        """Send or raise one of the MailError subclasses."""
        ...
