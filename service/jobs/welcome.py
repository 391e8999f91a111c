"""Jobs of the welcome mail: a list's welcome to a person who confirmed it, and tests."""

from __future__ import annotations

from .. import db
from ..campaigns import welcome


def send_welcome(subscriber_id: int, list_id: int) -> str:
    """The list's welcome, at most once per person and list (a second run sends nothing)."""
    return welcome.send_welcome(db.session(), subscriber_id, list_id)


def send_test(list_id: int, locale: str, address: str, actor: str) -> str:
    """The list's stored welcome in `locale` to a staff address, marked [TEST]."""
    return welcome.send_test(db.session(), list_id, locale, address, actor)
