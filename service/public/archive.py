"""Campaigns on the web: a recipient's own copy (`/view/<token>`) and the public archive
(`/archive`, `/archive/<id>`, `/archive.atom`). The work is in `campaigns.copies`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext

from .. import config, db
from ..campaigns import copies
from ..campaigns.render import ContentError
from ..i18n import LOCALES, current_locale, use_locale
from ..tokens import TokenError

bp = Blueprint("archive", __name__)

# The archive is the same for everyone reading a language: shared caches may keep it a
# few minutes. (A campaign taken out of the archive disappears within that time.)
PUBLIC_CACHE = "public, max-age=300"


def _not_found(status: int = 404) -> tuple[str, int]:
    return render_template("public/not_found.html"), status


@bp.get("/view/<token>")
def view(token: str) -> Any:
    """One recipient's own copy of a campaign mail, with their name and links."""
    try:
        copy = copies.personal_copy(db.session(), token)
    except (TokenError, ContentError):
        copy = None
    if copy is None:
        # A bad, tampered or foreign token and a copy that is no more look the same.
        use_locale(_visitor_locale())
        response = Response(*_not_found())
    else:
        use_locale(copy.locale)
        response = Response(render_template("public/view.html", copy=copy))
    # The page holds the person's own links: never kept by a shared cache, never indexed,
    # and the token is not handed on to the sites the mail links to.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _visitor_locale() -> str:
    """`?lang=`, else the browser's language (as the other public pages choose)."""
    lang = request.args.get("lang")
    return lang if lang in LOCALES else request.accept_languages.best_match(list(LOCALES)) or "en"


def _public(response: Response) -> Response:
    response.headers["Cache-Control"] = PUBLIC_CACHE
    response.headers["Vary"] = "Accept-Language"
    return response


@bp.get("/archive")
def archive() -> Any:
    """The archived campaigns, newest first, in the visitor's language where one has it."""
    locale = current_locale()
    entries = []
    for campaign in copies.archived_campaigns(db.session()):
        try:
            entries.append(copies.archive_entry(campaign, locale))
        except ContentError:
            continue
    return _public(Response(render_template("public/archive.html", entries=entries,
                                            lang=request.args.get("lang"))))


@bp.get("/archive/<int:campaign_id>")
def archive_entry(campaign_id: int) -> Any:
    campaign = copies.archived(db.session(), campaign_id)
    if campaign is None:
        return _not_found()
    try:
        entry = copies.archive_entry(campaign, current_locale())
    except ContentError:
        return _not_found()
    return _public(Response(render_template("public/archive_entry.html", entry=entry,
                                            lang=request.args.get("lang"))))


@bp.get("/archive.atom")
def archive_feed() -> Any:
    """The archive as an Atom feed (in the visitor's language, like the pages)."""
    locale = current_locale()
    session = db.session()
    campaigns = []
    for campaign in copies.archived_campaigns(session):
        try:
            copies.archive_entry(campaign, locale)
        except ContentError:
            continue
        campaigns.append(campaign)
    title = f"{config.settings().org_name}: {_archive_title()}"
    body = copies.atom_feed(campaigns, locale, title)
    return _public(Response(body, 200, mimetype="application/atom+xml"))


def _archive_title() -> str:
    return gettext("Mail archive")
