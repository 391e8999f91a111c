"""Public pages: the hosted signup form, the plain-HTML form endpoint, confirmation."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    redirect,
    render_template,
    request,
    url_for,
)

from .. import config, db
from ..extensions import (
    SIGNUP_BODY_LIMIT,
    allow_framing_by,
    csrf,
    evidence,
    limiter,
    signup_limit,
)
from ..i18n import LOCALES, use_locale
from ..lists import public_lists
from ..models import Subscriber
from ..observability import metrics
from ..subscriptions import signup as logic
from ..tokens import Purpose, TokenError, read_token_with_time, signed_before

bp = Blueprint("subscriptions", __name__)




def _locale(value: str | None) -> str:
    return value if value in LOCALES else "en"


def allowed_redirect(target: str) -> str | None:
    """`target` if it points into one of FORM_ALLOWED_ORIGINS, else None.

    Whitespace and control or format characters (CR/LF, NUL, bidi overrides) refuse the
    whole target: `urlsplit` silently drops some of them, so the origin check alone would
    pass a value that then cannot be, or must not be, a `Location` header.
    """
    if not target or not target.isprintable() or any(c.isspace() for c in target):
        return None
    parts = urlsplit(target)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme in ("http", "https") and origin in config.settings().form_allowed_origins:
        return target
    return None


@bp.before_request
def _small_bodies() -> None:
    if request.method == "POST" and request.endpoint == "subscriptions.subscribe_post":
        request.max_content_length = SIGNUP_BODY_LIMIT


@bp.get("/subscribe")
def subscribe_form() -> Any:
    lang = _locale(request.args.get("lang"))
    use_locale(lang)
    wanted = [s for s in request.args.get("lists", "").split(",") if s]
    lists = public_lists(db.session(), wanted or None)
    return render_template(
        "public/subscribe.html",
        lists=lists,
        chosen={ml.slug for ml in lists} if wanted else set(),
        values={"lang": lang},
        errors={},
        lang=lang,
    )


@bp.post("/subscribe")
@limiter.limit(signup_limit)
@csrf.exempt
def subscribe_post() -> Any:
    f = request.form
    lang = _locale(f.get("lang"))
    use_locale(lang)
    form = logic.SignupForm(
        email=f.get("email", ""),
        lists=[s for value in f.getlist("lists") for s in value.split(",")],
        first_name=f.get("first_name", ""),
        last_name=f.get("last_name", ""),
        postal_code=f.get("postal_code", ""),
        lang=f.get("lang", "en") or "en",
        source=f.get("source", "") or request.headers.get("Referer", ""),
    )
    try:
        logic.submit(db.session(), form, honeypot=f.get("website", ""),
                     evidence=lambda source: evidence("form", source))
    except logic.ValidationErrors as exc:
        lists = public_lists(db.session())
        return (
            render_template(
                "public/subscribe.html",
                lists=lists,
                chosen=set(form.lists),
                values=f,
                errors=exc.errors,
                lang=lang,
            ),
            422,
        )
    target = allowed_redirect(f.get("redirect", "")) or url_for(
        "subscriptions.thanks", lang=lang
    )
    return redirect(target, code=303)


@bp.get("/subscribe/thanks")
def thanks() -> Any:
    use_locale(_locale(request.args.get("lang")))
    return render_template("public/thanks.html")


def _read_confirm(token: str) -> tuple[dict[str, Any] | None, TokenError | None]:
    try:
        payload, signed_at = read_token_with_time(Purpose.confirm, token)
    except TokenError as exc:
        return None, exc
    subscriber = db.session().get(Subscriber, payload["s"])
    if subscriber is not None and signed_before(signed_at, subscriber.created_at):
        return None, TokenError("This link is not valid.")  # an erased person's reused id
    return payload, None


def _list_ids(payload: dict[str, Any]) -> list[int]:
    return [i for i in payload.get("l", []) if isinstance(i, int)]


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Any:
    """Shows a button; changes nothing (mail scanners fetch every link)."""
    payload, error = _read_confirm(token)
    if payload is None:
        use_locale(_locale(request.args.get("lang")))
        return render_template("public/token_invalid.html", error=error), 400
    result = logic.pending_for_token(db.session(), payload["s"], _list_ids(payload))
    if not result.valid:
        return render_template("public/token_invalid.html", error=None), 404
    use_locale(result.locale)
    return render_template("public/confirm.html", result=result, token=token)


@bp.post("/confirm/<token>")
@csrf.exempt  # the signed token is the credential
def confirm_post(token: str) -> Any:
    payload, error = _read_confirm(token)
    if payload is None:
        use_locale(_locale(request.args.get("lang")))
        return render_template("public/token_invalid.html", error=error), 400
    session = db.session()
    result = logic.confirm(session, payload["s"], _list_ids(payload), evidence("confirm"))
    session.commit()
    if not result.valid:
        return render_template("public/token_invalid.html", error=None), 404
    if result.confirmed:
        metrics().confirmations.inc(len(result.confirmed))
    use_locale(result.locale)
    return render_template("public/confirmed.html", result=result)


# The hosted form (and the thank-you page it leads to) is meant to be embedded in the
# organisation's pages; everything else here (the confirmation) is framed by no one.
EMBEDDABLE = {"subscriptions.subscribe_form", "subscriptions.subscribe_post",
              "subscriptions.thanks"}


@bp.before_request
def _embeddable() -> None:
    if request.endpoint in EMBEDDABLE:
        allow_framing_by(config.settings().form_allowed_origins)
