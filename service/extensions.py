"""Flask extensions, created unbound here and bound to an app in `create_app`."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import flask_smorest
from flask import Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_babel import Babel
from flask_cors import CORS
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_smorest import Api
from flask_wtf import CSRFProtect
from marshmallow import Schema
from webargs.core import missing
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.routing import IntegerConverter, Map

from . import config, jsonbody
from .db import MAX_ID
from .subscribers import Evidence

# Public signup bodies (form and JSON) are small; anything bigger is refused unread.
SIGNUP_BODY_LIMIT = 64 * 1024


def client_ip() -> str:
    """The client address. ProxyFix (PROXY_HOPS) has already resolved trusted hops."""
    return request.remote_addr or "unknown"


def evidence(endpoint: str, source: str = "") -> Evidence:
    """What the consent ledger records about the request behind a change."""
    return Evidence(
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent", ""),
        source=source or request.headers.get("Referer", ""),
        endpoint=endpoint,
        consent_text_version=config.settings().consent_text_version,
    )


def signup_limit() -> str:
    """The public signup's rate limit (SIGNUP_RATE_LIMIT), read per request."""
    return config.settings().signup_rate_limit


# No X-RateLimit-* headers on every answer: reading the window back for them was two of
# the three Redis round trips a signup spent on its limit (~10 % of its time under load).
# A 429 still says when to come back (`Retry-After`, see service.api).
limiter = Limiter(key_func=client_ip, default_limits=[], headers_enabled=False)
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
cors = CORS()
class JsonApi(Api):
    """flask-smorest, with the CONTRACT's error shape `{"errors": {field: [messages]}}`.

    Only /api/ paths answer JSON; public pages keep Flask's HTML error pages.
    """

    def handle_http_exception(self, error: Any) -> Any:
        if not request.path.startswith("/api/"):
            return error
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        errors: dict[str, Any] = {}
        if isinstance(messages, dict):
            # webargs nests by location: {"json": {"email": [...]}}; flatten it.
            for location, fields in messages.items():
                if isinstance(fields, dict) and location in ("json", "form", "query", "files"):
                    errors.update(fields)
                else:
                    errors[location] = fields
        if not errors:
            errors = {"_request": [data.get("message") or error.description or error.name]}
        response = jsonify({"errors": errors})
        response.status_code = error.code or 500
        for key, value in (data.get("headers") or {}).items():
            response.headers[key] = value
        return response


api = JsonApi()


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with `request.get_json()` refusing deep nesting like every other
    JSON body (`service.jsonbody`); the refusal is a ValueError, so Flask answers 400."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsonbody.loads(s, **kwargs)


class BoundedJSONParser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies through `service.jsonbody`: a body
    nested too deeply is a 400 that says so, like invalid JSON."""

    def load_json(self, req: Any, schema: Schema) -> Any:
        if not is_json_request(req):
            return missing
        body = req.get_data(cache=True)
        if not body:
            return missing
        try:
            return jsonbody.loads(body)
        except jsonbody.TooDeep as exc:
            message = exc.message
        except ValueError:  # not JSON, or not UTF-8
            message = "Invalid JSON body."
        abort(400, messages={"json": [message]})


class ApiBlueprint(flask_smorest.Blueprint):
    """The blueprint of every API resource: flask-smorest's, with the bounded parser."""

    ARGUMENTS_PARSER = BoundedJSONParser()


class IdConverter(IntegerConverter):
    """`<int:…>` in every route: at most 9 ASCII digits (below MAX_ID, and more rows than
    any table here will hold), so a larger number or another script's digits is a 404
    like any unknown row, not a database error. The bound is in the pattern, not only in
    `max`: a value the pattern matches but `max` refuses answers 405 when the same path
    has a route for another method."""

    regex = r"[0-9]{1,9}"

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None,  # noqa: A002
                 max: int | None = MAX_ID, signed: bool = False) -> None:  # noqa: A002
        super().__init__(map, fixed_digits, min, max, signed)


# --- what a page may run and who may frame it -----------------------------------------

# Kept in the request's WSGI environ, which lives exactly as long as the request (`g`
# belongs to the app context, which tests keep across requests).
_NONCE = "actionlist.csp_nonce"
_FRAME_ANCESTORS = "actionlist.frame_ancestors"


def csp_nonce() -> str:
    """The nonce of this response's inline scripts (`<script nonce="{{ csp_nonce() }}">`):
    new for every request, so an injected script cannot guess it."""
    nonce: str | None = request.environ.get(_NONCE)
    if nonce is None:
        nonce = request.environ[_NONCE] = secrets.token_urlsafe(16)
    return nonce


def allow_framing_by(origins: Iterable[str]) -> None:
    """Let `origins` (besides the service itself) frame this request's page: the hosted
    signup form on the organisation's sites."""
    request.environ[_FRAME_ANCESTORS] = tuple(origins)


def security_headers(response: Response) -> Response:
    """Content-Security-Policy and X-Frame-Options on every answer.

    Scripts: the service's own files and inline blocks carrying this response's nonce, so
    an injected `<script>` or event handler does not run. Styles may be inline: the admin
    previews mails (inline CSS by design) in `srcdoc` frames, which inherit this policy.
    Images may come from any https host for the same reason. Framing: the service's own
    pages only (clickjacking on the admin and the self-service buttons), except where a
    view called `allow_framing_by` — there `frame-ancestors` alone decides, since
    X-Frame-Options cannot name several origins.
    """
    public = urlsplit(config.settings().public_url)
    public_origin = f"{public.scheme}://{public.netloc}" if public.netloc else ""
    extra: tuple[str, ...] | None = request.environ.get(_FRAME_ANCESTORS)
    if extra is None:
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    ancestors = " ".join(["'self'", *(extra or ())])
    policy = [
        "default-src 'self'",
        f"script-src 'self' 'nonce-{csp_nonce()}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        " ".join(["frame-src 'self'", public_origin]).strip(),
        "object-src 'none'",
        "base-uri 'none'",
        f"frame-ancestors {ancestors}",
    ]
    response.headers.setdefault("Content-Security-Policy", "; ".join(policy))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
