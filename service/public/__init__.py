"""Public pages: what subscribers and the organisation's web pages reach without a login.

`signup` (the hosted form, the plain-HTML form endpoint, confirmation), `selfservice`
(unsubscribe, preferences, GDPR export and erasure), `webhook` (SendGrid's signed Event
Webhook), `health` (`/healthz`, `/metrics`) and `archive` (a recipient's own copy of a
campaign, `/view/<token>`, and the public archive, `/archive…`).
"""

from __future__ import annotations

from flask import Flask

from . import archive, health, selfservice, signup, webhook


def register(app: Flask) -> None:
    for blueprint in (health.bp, signup.bp, selfservice.bp, webhook.bp, archive.bp):
        app.register_blueprint(blueprint)
