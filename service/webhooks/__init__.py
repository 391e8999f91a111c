"""SendGrid Event Webhook: events → deliveries, suppressions, subscriptions, statistics."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The public webhook route and the staff API blueprints (suppressions, stats)."""
    from ..extensions import api, csrf
    from . import signature
    from .api import stats_blp, suppressions_blp
    from .views import bp

    signature.init_app(app)
    app.register_blueprint(bp)
    # Bearer tokens, never cookies, authenticate the staff API: no CSRF token needed.
    csrf.exempt(suppressions_blp)
    api.register_blueprint(suppressions_blp)
    api.register_blueprint(stats_blp)
