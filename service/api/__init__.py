"""The staff REST API under /api/v1 (bearer tokens) and the OpenAPI document."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, jsonify
from flask_limiter.errors import RateLimitExceeded

from ..extensions import api, csrf, limiter
from . import campaigns, imports, lists, outgoing, segments, subscribers, subscriptions, webhooks


def register(app: Flask) -> None:
    """Every API blueprint, the bearer scheme in the OpenAPI document, the 429 answer."""
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer"}
    )
    api.register_blueprint(subscriptions.blp)
    api.register_blueprint(subscribers.blp)
    # Bearer tokens, never cookies, authenticate the staff API: no CSRF token needed.
    for blueprint in (lists.blp, campaigns.blp, segments.blp, imports.blp,
                      webhooks.suppressions_blp, subscribers.blp, outgoing.blp):
        csrf.exempt(blueprint)
    for blueprint in (lists.blp, campaigns.blp, segments.blp, imports.blp,
                      webhooks.suppressions_blp, webhooks.stats_blp, outgoing.blp):
        api.register_blueprint(blueprint)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Any:
        from flask import make_response, render_template, request

        if request.path.startswith("/api/"):
            response = jsonify({"errors": {"_request": [f"Too many requests: {exc.description}"]}})
            response.status_code = 429
        else:
            response = make_response(render_template("public/rate_limited.html"), 429)
        current = limiter.current_limit
        if current is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(current.reset_at - time.time())))
        return response
