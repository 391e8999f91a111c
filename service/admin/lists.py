"""Lists and signup forms: create and edit lists (with their welcome mail), embed code,
hosted link, preview."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import flash, g, redirect, render_template, request, url_for

from .. import config, db
from ..campaigns import welcome
from ..campaigns.list_settings import (
    ListInputError,
    SlugTaken,
    create_list,
    read_list_input,
    update_list,
)
from ..campaigns.render import ContentError
from ..i18n import LOCALES
from ..lists import all_lists, list_counts
from ..models import MailingList, Role
from .access import found, staff_required, staff_user
from .blueprint import bp

TEXT_FIELDS = ("name_en", "name_es", "description_en", "description_es")
WELCOME_FIELDS = tuple(f"welcome_{lang}_{part}" for lang in LOCALES
                       for part in ("subject", "body"))


def _form_input(form: dict[str, str], current: MailingList | None) -> dict[str, Any]:
    """The form as the list input `read_list_input` takes (the same as the API's)."""
    data: dict[str, Any] = {
        "name": {lang: form.get(f"name_{lang}", "").strip() for lang in LOCALES},
        "description": {lang: form.get(f"description_{lang}", "") for lang in LOCALES},
        "public": form.get("public") == "on",
        "welcome": {
            lang: {"subject": form.get(f"welcome_{lang}_subject", ""),
                   "body": form.get(f"welcome_{lang}_body", "")}
            if (form.get(f"welcome_{lang}_subject", "").strip()
                or form.get(f"welcome_{lang}_body", "").strip()) else None
            for lang in LOCALES
        },
    }
    if current is None:
        data["slug"] = form.get("slug", "").strip().lower()
    return data


def _form_values(form: dict[str, str], ml: MailingList | None) -> dict[str, Any]:
    values: dict[str, Any] = {name: form.get(name, "") for name in (*TEXT_FIELDS,
                                                                      *WELCOME_FIELDS)}
    values["slug"] = ml.slug if ml else form.get("slug", "")
    values["public"] = form.get("public") == "on"
    return values


def _stored_values(ml: MailingList | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "slug": ml.slug if ml else "",
        "public": ml.public if ml else True,
        **{name: getattr(ml, name) if ml else "" for name in TEXT_FIELDS},
    }
    for lang in LOCALES:
        content = ((ml.welcome or {}) if ml else {}).get(lang) or {}
        for part in ("subject", "body"):
            values[f"welcome_{lang}_{part}"] = content.get(part, "")
    return values


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


def _previews(values: dict[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The welcome of each language the form fills in, rendered for a sample person."""
    shown: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for lang in LOCALES:
        subject = values[f"welcome_{lang}_subject"]
        body = values[f"welcome_{lang}_body"]
        if not (subject.strip() and body.strip()):
            continue
        try:
            shown[lang] = welcome.preview(subject, body, lang)
        except ContentError as exc:
            errors[f"welcome_{lang}_body"] = str(exc)
    return shown, errors


def _list_form(ml: MailingList | None) -> Any:
    errors: dict[str, str] = {}
    values = _stored_values(ml)
    previews: dict[str, dict[str, str]] = {}
    if request.method == "POST":
        form = request.form.to_dict()
        action = form.get("action", "save")
        values = _form_values(form, ml)
        session = db.session()
        if action == "test" and ml is not None:
            lang = form.get("test_lang", "en")
            lang = lang if lang in LOCALES else "en"
            if ml.welcome_for(lang) is None:
                flash("Save a welcome first: the test sends the saved welcome.")
            else:
                welcome.queue_test(session, ml, lang, staff_user().email, g.actor)
                session.commit()
                flash(f"Test of the saved welcome ({lang}) queued to {staff_user().email}.")
            return redirect(url_for("admin.list_edit", list_id=ml.id))
        try:
            stored = read_list_input(session, _form_input(form, ml), ml)
        except ListInputError as exc:
            session.rollback()
            errors = {name.replace(".", "_"): " ".join(messages)
                      for name, messages in exc.errors.items()}
        if action == "preview" or errors:
            previews, preview_errors = _previews(values)
            errors = {**preview_errors, **errors}
        else:
            if ml is None:
                try:
                    ml = create_list(session, stored, g.actor)
                except SlugTaken as exc:
                    session.rollback()
                    errors = {"slug": " ".join(exc.errors["slug"])}
            else:
                update_list(session, ml, stored, g.actor)
            if not errors:
                assert ml is not None
                session.commit()
                flash(f"List {ml.slug} saved.")
                return redirect(url_for("admin.lists"))
    return render_template(
        "admin/list_form.html", ml=ml, values=values, errors=errors, previews=previews,
        locales=LOCALES,
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
