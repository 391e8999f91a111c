"""Pick the transport the configuration asks for."""

from __future__ import annotations

from ..config import Settings
from .base import Transport
from .outbox import OutboxTransport
from .sendgrid import SendGridTransport


def transport_for(settings: Settings) -> Transport:
    if settings.sendgrid_api_key:
        return SendGridTransport(
            settings.sendgrid_api_key, settings.sendgrid_api_host, settings.sendgrid_timeout
        )
    return OutboxTransport(settings.outbox_dir)
