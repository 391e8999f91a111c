"""The staff REST API under /api/v1 (bearer tokens) and the OpenAPI document."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, jsonify
from flask_limiter.errors import RateLimitExceeded

from ..extensions import api, limiter


def register(app: Flask) -> None:
    from ..subscriptions.api import blp as public_blp
    from .lists import blp as lists_blp
    from .subscribers import blp as subscribers_blp

    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer"}
    )
    for blueprint in (public_blp, lists_blp, subscribers_blp):
        api.register_blueprint(blueprint)

    from ..campaigns.api import register as register_campaigns

    register_campaigns(app)
    from ..imports.api import register as register_imports

    register_imports(app)

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
