"""Lists and signup forms: create and edit lists, embed code, hosted link, preview."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import flash, redirect, render_template, request, url_for

from .. import config, db
from ..i18n import LOCALES
from ..lists import all_lists, forget_public_lists, list_by_slug, list_counts
from ..models import MailingList, Role
from .access import audit, found, staff_required
from .blueprint import bp

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
TEXT_FIELDS = {"name_en": 200, "name_es": 200, "description_en": 4000, "description_es": 4000}


def _read_list_form(
    form: dict[str, str], current: MailingList | None
) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    # A slug is fixed once the list exists: embed codes on other sites name it.
    slug = current.slug if current is not None else form.get("slug", "").strip().lower()
    if not SLUG.match(slug):
        errors["slug"] = "Lower-case letters, digits and hyphens (at most 64)."
    else:
        clash = list_by_slug(db.session(), slug)
        if clash is not None and clash is not current:
            errors["slug"] = "Another list already has this slug."
    data["slug"] = slug
    for name, limit in TEXT_FIELDS.items():
        value = form.get(name, "").strip()
        if len(value) > limit:
            errors[name] = f"At most {limit} characters."
        data[name] = value[:limit]
    if not data["name_en"]:
        errors["name_en"] = "A list needs an English name."
    data["public"] = form.get("public") == "on"
    return data, errors


@bp.get("/lists")
@staff_required(Role.viewer)
def lists() -> Any:
    session = db.session()
    return render_template(
        "admin/lists.html", lists=all_lists(session), counts=list_counts(session)
    )


@bp.route("/lists/new", methods=["GET", "POST"])
@staff_required(Role.admin)
def list_new() -> Any:
    return _list_form(None)


@bp.route("/lists/<int:list_id>/edit", methods=["GET", "POST"])
@staff_required(Role.admin)
def list_edit(list_id: int) -> Any:
    return _list_form(found(db.session().get(MailingList, list_id)))


def _list_form(ml: MailingList | None) -> Any:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "slug": ml.slug if ml else "",
        "public": ml.public if ml else True,
        **{name: getattr(ml, name) if ml else "" for name in TEXT_FIELDS},
    }
    if request.method == "POST":
        values, errors = _read_list_form(request.form.to_dict(), ml)
        if not errors:
            session = db.session()
            if ml is None:
                ml = MailingList(**values)
                session.add(ml)
                session.flush()
                audit("list.create", "list", ml.id, slug=ml.slug)
            else:
                for name, value in values.items():
                    setattr(ml, name, value)
                audit("list.edit", "list", ml.id, slug=ml.slug)
            session.commit()
            forget_public_lists()
            flash(f"List {ml.slug} saved.")
            return redirect(url_for("admin.lists"))
    return render_template(
        "admin/list_form.html", ml=ml, values=values, errors=errors
    ), 422 if errors else 200


def embed_html(public_url: str, slugs: list[str], lang: str) -> str:
    """The plain HTML form an organisation pastes into its own pages."""
    return render_template(
        "admin/embed_snippet.html", action=f"{public_url}/subscribe", slugs=slugs, lang=lang
    ).strip() + "\n"


@bp.get("/lists/embed")
@staff_required(Role.viewer)
def list_embed() -> Any:
    session = db.session()
    every = all_lists(session)
    known = {ml.slug for ml in every}
    wanted = [s for s in request.args.getlist("lists") if s in known]
    if not wanted:
        wanted = [s for s in request.args.get("slugs", "").split(",") if s in known]
    if not wanted and every:
        wanted = [every[0].slug]
    lang = request.args.get("lang", "en")
    lang = lang if lang in LOCALES else "en"
    settings = config.settings()
    query = urlencode({"lists": ",".join(wanted), "lang": lang})
    return render_template(
        "admin/embed.html",
        lists=every,
        wanted=wanted,
        lang=lang,
        code=embed_html(settings.public_url, wanted, lang),
        hosted_url=f"{settings.public_url}/subscribe?{query}",
        preview_url=f"{url_for('subscriptions.subscribe_form')}?{query}",
    )
