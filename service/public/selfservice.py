"""Subscriber self-service pages: unsubscribe, preference centre, export and erase.

Every POST here whose URL carries a signed token is CSRF-exempt: the token is the
credential, and mail clients performing RFC 8058 one-click post without cookies. These
views never touch the session, so they never set a cookie. GET never changes anything
(mail scanners and link previews fetch every URL in a mail).

Exporting and erasing need a recently mailed link (`gdpr.proof_is_fresh`); every link
this module hands on (the unsubscribe page's way to the preferences) carries the time
its own link was mailed, so following links never makes a proof fresher.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from .. import config, db
from ..extensions import csrf, evidence, limiter, signup_limit
from ..i18n import LOCALES, use_locale
from ..lists import public_lists
from ..models import Subscriber, SubscriptionStatus
from ..observability import metrics
from ..subscriptions import gdpr, preferences
from ..subscriptions import unsubscribe as unsub
from ..subscriptions.signup import ValidationErrors
from ..tokens import (
    Purpose,
    TokenError,
    issued_at,
    list_ids_of,
    make_token,
    read_token_with_time,
    signed_before,
)

bp = Blueprint("selfservice", __name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _request_locale() -> str:
    lang = request.args.get("lang") or request.form.get("lang")
    if lang in LOCALES:
        return str(lang)
    return request.accept_languages.best_match(list(LOCALES)) or "en"


def _invalid(error: TokenError | None, status: int) -> tuple[str, int]:
    use_locale(_request_locale())
    return render_template("public/token_invalid.html", error=error), status


def _subscriber_from(purpose: Purpose, token: str) -> tuple[Subscriber | None, dict[str, Any],
                                                            tuple[str, int] | None]:
    """The subscriber a token names, or the error page to answer with.

    `g.link_mailed_at` is when the mail that carried the link was sent (`issued_at`).
    """
    try:
        payload, signed_at = read_token_with_time(purpose, token)
    except TokenError as exc:
        return None, {}, _invalid(exc, 400)
    g.link_mailed_at = issued_at(payload, signed_at)
    subscriber = db.session().get(Subscriber, payload["s"])
    if subscriber is None or signed_before(signed_at, subscriber.created_at):
        return None, payload, _invalid(None, 404)
    use_locale(subscriber.locale)
    return subscriber, payload, None


def _preferences_path(subscriber_id: int) -> str:
    """A preferences link that is no fresher than the link of this request."""
    mailed = int(g.link_mailed_at.timestamp())
    token = make_token(Purpose.preferences, {"s": subscriber_id, "t": mailed})
    return url_for("selfservice.preferences_page", token=token)


def _active_lists(subscriber: Subscriber, list_ids: list[int]) -> list[Any]:
    return [
        sub.mailing_list
        for sub in unsub.subscriptions_of(db.session(), subscriber.id, list_ids or None, lock=False)
        if sub.status in unsub.ACTIVE
    ]


# --- unsubscribe ----------------------------------------------------------------------


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Any:
    subscriber, payload, error = _subscriber_from(Purpose.unsubscribe, token)
    if subscriber is None:
        return error
    list_ids = list_ids_of(payload)
    scope = unsub.load_scope(db.session(), subscriber.id, list_ids)
    return render_template(
        "public/unsubscribe.html",
        scope=scope,
        active=_active_lists(subscriber, list_ids),
        preferences_path=_preferences_path(subscriber.id),
    )


@bp.post("/unsubscribe/<token>")
@csrf.exempt  # the signed token is the credential (RFC 8058: no cookies, no CSRF token)
def unsubscribe_post(token: str) -> Any:
    """One-click (`List-Unsubscribe=One-Click`), the page's buttons, or undo.

    Always answers 200 with a page (never a redirect) so one-click clients see success.
    """
    subscriber, payload, error = _subscriber_from(Purpose.unsubscribe, token)
    if subscriber is None:
        return error
    session = db.session()
    form = request.form
    token_lists = list_ids_of(payload)
    if form.get("undo"):
        receipt = unsub.lists_of_receipt(form.get("receipt", ""), subscriber)
        in_scope = [i for i in receipt if not token_lists or i in token_lists]
        change = unsub.undo(session, subscriber, in_scope, evidence("unsubscribe-undo"))
        session.commit()
        return render_template(
            "public/unsubscribe_done.html", undone=True, change=change,
            preferences_path=_preferences_path(subscriber.id),
        )

    one_click = form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    channel = "one-click" if one_click else "link"
    everything = form.get("scope") == "all" or not token_lists
    campaign = payload.get("c")
    source = f"campaign {campaign}" if isinstance(campaign, int) else ""
    change = unsub.unsubscribe(
        session, subscriber, None if everything else token_lists,
        evidence(f"unsubscribe-{channel}", source), channel,
    )
    session.commit()
    if change.changed:
        metrics().unsubscribes.labels(channel).inc(len(change.changed))
    return render_template(
        "public/unsubscribe_done.html",
        undone=False,
        change=change,
        everything=everything,
        undo_receipt=unsub.undo_receipt(subscriber, change),
        preferences_path=_preferences_path(subscriber.id),
    )


# --- preference centre ----------------------------------------------------------------


@bp.get("/preferences")
def preferences_request_form() -> Any:
    use_locale(_request_locale())
    return render_template("public/preferences_request.html", errors={}, values={})


@bp.post("/preferences")
@limiter.limit(signup_limit)
@csrf.exempt  # a public form like /subscribe; it changes no data, and answers alike
def preferences_request_post() -> Any:
    use_locale(_request_locale())
    raw = request.form.get("email", "")
    session = db.session()
    outcome = preferences.request_link(session, raw)
    if outcome == preferences.LinkOutcome.invalid:
        errors = {"email": ["invalid"]}
        return render_template(
            "public/preferences_request.html", errors=errors, values=request.form
        ), 422
    session.commit()
    return render_template("public/preferences_requested.html")


def _render_preferences(subscriber: Subscriber, *, errors: dict[str, list[str]] | None = None,
                        values: dict[str, Any] | None = None, saved: bool = False,
                        status: int = 200) -> Any:
    session = db.session()
    state = preferences.current_state(session, subscriber)
    fresh = gdpr.proof_is_fresh(g.link_mailed_at)
    export_path = url_for(
        "selfservice.export_download", token=make_token(Purpose.export, {"s": subscriber.id})
    ) if fresh else ""
    return render_template(
        "public/preferences.html",
        subscriber=subscriber,
        lists=public_lists(session),
        state=state,
        active=SubscriptionStatus,
        values=values or {},
        errors=errors or {},
        saved=saved,
        fresh=fresh,
        fresh_days=config.settings().preferences_fresh_days,
        export_path=export_path,
    ), status


@bp.get("/preferences/<token>")
def preferences_page(token: str) -> Any:
    subscriber, _payload, error = _subscriber_from(Purpose.preferences, token)
    if subscriber is None:
        return error
    return _render_preferences(subscriber, saved=request.args.get("saved") == "1")


@bp.post("/preferences/<token>")
@csrf.exempt  # the signed token is the credential
def preferences_post(token: str) -> Any:
    subscriber, _payload, error = _subscriber_from(Purpose.preferences, token)
    if subscriber is None:
        return error
    session = db.session()
    form = request.form
    if form.get("action") == "new_link":
        # Same answer whatever the outcome (throttled, suppressed), as on GET /preferences.
        preferences.request_link(session, subscriber.email)
        session.commit()
        return render_template("public/preferences_requested.html")
    if form.get("action") == "erase":
        if not gdpr.proof_is_fresh(g.link_mailed_at):
            return _render_preferences(subscriber, errors={"erase": ["stale"]}, status=403)
        if form.get("confirm_erase") != "yes":
            return _render_preferences(
                subscriber, errors={"confirm_erase": ["required"]}, status=422
            )
        gdpr.erase(session, subscriber, evidence("preferences-erase"))
        session.commit()
        return render_template("public/erased.html")

    data = preferences.PreferencesForm(
        lists=[s for s in form.getlist("lists") if s],
        lang=form.get("lang", subscriber.locale),
        first_name=form.get("first_name", ""),
        last_name=form.get("last_name", ""),
        postal_code=form.get("postal_code", ""),
        stop_all=form.get("action") == "stop_all",
    )
    try:
        validated = preferences.validate(session, data)
    except ValidationErrors as exc:
        return _render_preferences(subscriber, errors=exc.errors, values=form, status=422)
    preferences.apply(session, subscriber, validated, evidence("preferences"))
    session.commit()
    return redirect(url_for("selfservice.preferences_page", token=token, saved="1"), code=303)


# --- export ---------------------------------------------------------------------------


@bp.get("/export/<token>")
def export_download(token: str) -> Any:
    """The subscriber's data as a JSON download (a short-lived `export` token)."""
    subscriber, _payload, error = _subscriber_from(Purpose.export, token)
    if subscriber is None:
        return error
    data = gdpr.export_data(db.session(), subscriber)
    body = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    stamp = data["exported_at"][:10]
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="my-data-{stamp}.json"',
            "Cache-Control": "no-store",
        },
    )
