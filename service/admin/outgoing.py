"""Outgoing webhooks in the admin (admin role): add an endpoint (its secret shown once),
choose its events, see its delivery log, send a test event, enable or disable it.

The same functions as the API (`service.outgoing.endpoints`). Every admin page shows a
banner while an endpoint is disabled (`disabled_webhooks` in the template context).
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from .. import db
from ..i18n import current_locale
from ..models import OutgoingEndpoint, Role
from ..outbound import EVENT_TYPES
from ..outgoing.endpoints import (
    EndpointError,
    all_endpoints,
    attempts,
    change,
    create,
    delete,
    send_test,
    waiting,
)
from .access import actor, found, staff_required
from .blueprint import bp


def disabled_webhooks() -> int:
    """How many endpoints are disabled (the banner on every admin page)."""
    return int(db.session().scalar(
        select(func.count()).select_from(OutgoingEndpoint)
        .where(OutgoingEndpoint.enabled.is_(False))) or 0)


@bp.app_context_processor
def _webhook_banner() -> dict[str, Any]:
    return {"disabled_webhooks": disabled_webhooks}


def _events_from_form() -> list[str]:
    return [e for e in request.form.getlist("events") if isinstance(e, str)][:50]


def _page(template: str, status: int = 200, **context: Any) -> Any:
    return render_template(template, event_types=EVENT_TYPES, lang=current_locale(),
                           **context), status


@bp.get("/webhooks")
@staff_required(Role.admin)
def webhooks() -> Any:
    session = db.session()
    endpoints = all_endpoints(session)
    return _page("admin/webhooks.html", endpoints=endpoints,
                 waiting={e.id: waiting(session, e.id) for e in endpoints},
                 errors={}, values={"url": "", "events": []})


@bp.post("/webhooks")
@staff_required(Role.admin)
def webhook_create() -> Any:
    session = db.session()
    url = request.form.get("url", "")
    events = _events_from_form()
    try:
        made = create(session, url, events, actor())
    except EndpointError as exc:
        session.rollback()
        endpoints = all_endpoints(session)
        return _page("admin/webhooks.html", 422, endpoints=endpoints,
                     waiting={e.id: waiting(session, e.id) for e in endpoints},
                     errors={exc.field: exc.message},
                     values={"url": url[:2000], "events": events})
    session.commit()
    return _page("admin/webhook.html", endpoint=made.endpoint, secret=made.secret,
                 log=[], waiting_count=0, errors={})


@bp.get("/webhooks/<int:endpoint_id>")
@staff_required(Role.admin)
def webhook(endpoint_id: int) -> Any:
    session = db.session()
    endpoint = found(session.get(OutgoingEndpoint, endpoint_id))
    return _page("admin/webhook.html", endpoint=endpoint, secret=None,
                 log=attempts(session, endpoint.id), waiting_count=waiting(session, endpoint.id),
                 errors={})


@bp.post("/webhooks/<int:endpoint_id>")
@staff_required(Role.admin)
def webhook_edit(endpoint_id: int) -> Any:
    session = db.session()
    endpoint = found(session.get(OutgoingEndpoint, endpoint_id))
    changes = {"url": request.form.get("url", ""), "events": _events_from_form(),
               "enabled": request.form.get("enabled") == "on"}
    try:
        change(session, endpoint, changes, actor())
    except EndpointError as exc:
        session.rollback()
        endpoint = found(session.get(OutgoingEndpoint, endpoint_id))
        return _page("admin/webhook.html", 422, endpoint=endpoint, secret=None,
                     log=attempts(session, endpoint.id),
                     waiting_count=waiting(session, endpoint.id),
                     errors={exc.field: exc.message})
    session.commit()
    flash(_("Webhook saved."))
    return redirect(url_for("admin.webhook", endpoint_id=endpoint_id), 303)


@bp.post("/webhooks/<int:endpoint_id>/test")
@staff_required(Role.admin)
def webhook_test(endpoint_id: int) -> Any:
    session = db.session()
    endpoint = found(session.get(OutgoingEndpoint, endpoint_id))
    try:
        event = send_test(session, endpoint, actor())
    except EndpointError as exc:
        session.rollback()
        flash(exc.message)
    else:
        session.commit()
        flash(_("Test event %(id)s queued: its attempts appear below.", id=event.public_id))
    return redirect(url_for("admin.webhook", endpoint_id=endpoint_id), 303)


@bp.post("/webhooks/<int:endpoint_id>/delete")
@staff_required(Role.admin)
def webhook_delete(endpoint_id: int) -> Any:
    session = db.session()
    delete(session, found(session.get(OutgoingEndpoint, endpoint_id)), actor())
    session.commit()
    flash(_("Webhook deleted."))
    return redirect(url_for("admin.webhooks"), 303)
