"""The transport the configuration asks for, and the running app's one."""

from __future__ import annotations

from flask import current_app

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


def transport() -> Transport:
    """The running app's transport (`create_app` stores the one `transport_for` picked)."""
    chosen: Transport = current_app.extensions["mail_transport"]
    return chosen
