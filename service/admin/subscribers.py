"""Subscriber pages: search, detail, edit, unsubscribe, add by hand."""

from __future__ import annotations

import re
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from .. import db
from ..db import parse_id
from ..extensions import client_ip
from ..i18n import LOCALES
from ..lists import all_lists
from ..models import Role, Subscriber, Subscription, SubscriptionStatus
from ..subscribers import Evidence, is_suppressed
from ..subscriptions.gdpr import erase
from ..subscriptions.staff_changes import (
    FormErrors,
    add_by_hand,
    edit_subscriber,
    read_profile,
    unsubscribe,
)
from ..subscriptions.staff_changes import update_profile as apply_profile
from . import queries
from .access import actor, audit, found_by_id, staff_required
from .blueprint import bp
from .params import id_arg


def staff_evidence(endpoint: str) -> Evidence:
    return Evidence(
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent", ""),
        source="admin",
        endpoint=endpoint,
        actor=actor(),
    )


def _load(subscriber_id: int) -> Subscriber:
    return found_by_id(
        Subscriber,
        subscriber_id,
        selectinload(Subscriber.subscriptions).joinedload(Subscription.mailing_list),
        selectinload(Subscriber.consent_records),
        selectinload(Subscriber.tag_rows),
    )


@bp.get("/subscribers")
@staff_required(Role.viewer)
def subscribers() -> Any:
    session = db.session()
    status = request.args.get("status", "")
    lang = request.args.get("lang", "")
    filters = queries.SubscriberFilters(
        q=request.args.get("q", "")[:254],
        list_slug=request.args.get("list", "")[:64],
        status=status if status in {s.value for s in SubscriptionStatus} else "",
        state=request.args.get("state", "")[:2],
        locale=lang if lang in LOCALES else "",
        before=id_arg("before"),
    )
    return render_template(
        "admin/subscribers.html",
        page=queries.search_subscribers(session, filters),
        filters=filters,
        lists=all_lists(session),
        states=queries.known_states(session),
        statuses=[s.value for s in SubscriptionStatus],
    )


@bp.get("/subscribers/<int:subscriber_id>")
@staff_required(Role.viewer)
def subscriber_detail(subscriber_id: int) -> Any:
    return _detail_page(_load(subscriber_id), {})


def _detail_page(subscriber: Subscriber, errors: dict[str, str],
                 labels: dict[str, Any] | None = None) -> Any:
    session = db.session()
    page = render_template(
        "admin/subscriber.html",
        s=subscriber,
        deliveries=queries.subscriber_deliveries(session, subscriber.id),
        suppressed=is_suppressed(session, subscriber.email),
        errors=errors,
        locales=LOCALES,
        labels=labels or {"tags": ", ".join(row.tag for row in subscriber.tag_rows),
                          "attributes": sorted((subscriber.attributes or {}).items()),
                          "new_key": "", "new_value": ""},
    )
    return page, 422 if errors else 200


def _label_errors(errors: dict[str, str]) -> dict[str, str]:
    """The domain's field names ("tags.2", "attributes.cd") as the form words them."""
    shown: dict[str, str] = {}
    for name, message in errors.items():
        if name.startswith("tags."):
            index = int(name.split(".", 1)[1]) + 1
            shown.setdefault("tags", _("Tag %(n)d: %(message)s", n=index, message=message))
        elif name.startswith("attributes."):
            key = name.split(".", 1)[1]
            shown.setdefault("attributes",
                             _("Attribute “%(key)s”: %(message)s", key=key, message=message))
        elif name == "attributes":
            shown.setdefault("attributes", _("Attributes: %(message)s", message=message))
        else:
            shown.setdefault(name, message)
    return shown


@bp.post("/subscribers/<int:subscriber_id>/labels")
@staff_required(Role.campaigner)
def subscriber_labels(subscriber_id: int) -> Any:
    """Tags (comma- or semicolon-separated, replacing the person's) and attributes (an
    emptied value removes the key; a new key and value add one), through the same
    `edit_subscriber` as `PATCH /api/v1/subscribers/<id>`."""
    subscriber = _load(subscriber_id)
    form = request.form
    tags = [part for part in re.split(r"[,;]", form.get("tags", "")) if part.strip()]
    keys, values = form.getlist("attr_key"), form.getlist("attr_value")
    attributes: dict[str, Any] = {k: (v or None) for k, v in zip(keys, values, strict=False)}
    new_key, new_value = form.get("new_key", ""), form.get("new_value", "")
    if new_key.strip() or new_value.strip():
        if not new_key.strip():
            attributes[""] = new_value  # refused by the rules: "must not be empty"
        else:
            attributes[new_key] = new_value or None
    session = db.session()
    try:
        changes = edit_subscriber(session, subscriber,
                                  {"tags": tags, "attributes": attributes}, actor())
    except FormErrors as exc:
        session.rollback()
        labels = {"tags": form.get("tags", ""),
                  "attributes": list(zip(keys, values, strict=False)),
                  "new_key": new_key, "new_value": new_value}
        return _detail_page(_load(subscriber_id), _label_errors(exc.errors), labels)
    session.commit()
    flash(_("Tags and attributes saved.") if changes else _("Nothing changed."))
    return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber.id))


@bp.post("/subscribers/<int:subscriber_id>/edit")
@staff_required(Role.editor)
def subscriber_edit(subscriber_id: int) -> Any:
    subscriber = _load(subscriber_id)
    try:
        profile = read_profile(request.form.to_dict())
    except FormErrors as exc:
        return _detail_page(subscriber, exc.errors)
    changes = apply_profile(subscriber, profile)
    if changes:
        audit("subscriber.edit", "subscriber", subscriber.id, changes=changes)
    db.session().commit()
    flash("Saved." if changes else "Nothing changed.")
    return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber.id))


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@staff_required(Role.editor)
def subscriber_unsubscribe(subscriber_id: int) -> Any:
    subscriber = _load(subscriber_id)
    list_id = parse_id(request.form.get("list_id", ""))
    if list_id is None:
        abort(400)
    session = db.session()
    if unsubscribe(session, subscriber, list_id, staff_evidence("admin.unsubscribe")):
        audit("subscriber.unsubscribe", "subscriber", subscriber.id, list_id=list_id)
        session.commit()
        flash("Unsubscribed.")
    else:
        flash("Not subscribed to that list.")
    return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber.id))


@bp.post("/subscribers/<int:subscriber_id>/erase")
@staff_required(Role.admin)
def subscriber_erase(subscriber_id: int) -> Any:
    """Erase a person on their request: the same `erase` as POST /preferences/<token>.

    Irreversible, so admins only, and the address must be typed again to confirm.
    """
    subscriber = _load(subscriber_id)
    typed = request.form.get("confirm_email", "").strip().lower()
    if typed != subscriber.email_key:
        flash("Type the subscriber's address exactly to confirm the erasure.")
        return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber.id))
    session = db.session()
    erase(session, subscriber, staff_evidence("admin.erase"))
    session.commit()
    flash("Erased. Only a keyed hash of the address remains, on the suppression list.")
    return redirect(url_for("admin.subscribers"))


def _list_ids() -> set[int]:
    """The list ids ticked on the form (anything else is not a list, so not chosen)."""
    return {i for i in map(parse_id, request.form.getlist("lists")) if i is not None}


@bp.route("/subscribers/new", methods=["GET", "POST"])
@staff_required(Role.campaigner)
def subscriber_new() -> Any:
    session = db.session()
    lists = all_lists(session)
    errors: dict[str, str] = {}
    form = request.form.to_dict()
    if request.method == "POST":
        wanted = _list_ids()
        chosen = [ml for ml in lists if ml.id in wanted]
        try:
            subscriber = add_by_hand(session, form, chosen, staff_evidence("admin.add"))
        except FormErrors as exc:
            errors = exc.errors
        else:
            session.flush()
            audit(
                "subscriber.add", "subscriber", subscriber.id,
                lists=[ml.slug for ml in chosen],
            )
            session.commit()
            flash("Subscriber added.")
            return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber.id))
    return render_template(
        "admin/subscriber_new.html", lists=lists, errors=errors, form=form,
        chosen=_list_ids(),
        locales=LOCALES,
    ), 422 if errors else 200

