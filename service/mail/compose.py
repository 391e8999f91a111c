"""Building transactional mails from templates/email/ in the recipient's language."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

import css_inline
from flask import render_template
from flask_babel import force_locale

from .. import config
from .base import OutgoingMail, Personalization

_inliner = css_inline.CSSInliner(keep_style_tags=False)


def inline_css(html: str) -> str:
    return str(_inliner.inline(html))


def transactional(
    template: str, locale: str, to_email: str, to_name: str = "", **context: Any
) -> OutgoingMail:
    """Render `email/<template>.subject.txt`, `.html` and `.txt` into one mail."""
    settings = config.settings()
    context.setdefault("org_name", settings.org_name)
    context.setdefault("org_postal_address", settings.org_postal_address)
    with force_locale(locale):
        subject = render_template(f"email/{template}.subject.txt", **context).strip()
        html = inline_css(render_template(f"email/{template}.html", **context))
        text = render_template(f"email/{template}.txt", **context)
    from_name, from_email = parseaddr(settings.mail_from)
    return OutgoingMail(
        subject=" ".join(subject.split()),
        html=html,
        text=text,
        from_email=from_email,
        from_name=from_name,
        reply_to=settings.mail_reply_to,
        personalizations=[Personalization(email=to_email, name=safe_name(to_name))],
        categories=[f"transactional-{template}"],
    )


def safe_name(name: str) -> str:
    # SendGrid refuses `;` and `,` in recipient names.
    return " ".join(name.replace(";", " ").replace(",", " ").split())
