"""Logs that carry a request or job id, and Prometheus metrics (served by public/health.py).

No log line the service writes carries the token of a signed link: the tokens sit in URL
paths (`/preferences/<token>` exports and erases a person's data), and log files travel
further than the database. `RedactTokens` rewrites them to `[token]` on the app's log
handler and, through `GunicornLogger` (the Procfile's `--logger-class`), in gunicorn's
access and error logs, whose lines also hold the `Referer` of the page a link led to.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context
from gunicorn.glogging import Logger as _GunicornBaseLogger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from rq import get_current_job


class Metrics:
    """All metrics of one app, in the app's own registry (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.signups = Counter(
            "actionlist_signups_total", "Signup requests by outcome", ["outcome"], registry=r
        )
        self.confirmations = Counter(
            "actionlist_confirmations_total", "Subscriptions confirmed", registry=r
        )
        self.mails = Counter(
            "actionlist_mails_total", "Mails handed to the transport by kind and result",
            ["kind", "result"], registry=r,
        )
        self.requests = Histogram(
            "actionlist_http_request_seconds", "HTTP request latency", ["endpoint"], registry=r
        )
        self.queue_depth = Gauge(
            "actionlist_queue_depth", "Jobs waiting per queue", ["queue"], registry=r
        )
        self.unsubscribes = Counter(
            "actionlist_unsubscribes_total", "Unsubscribes by channel", ["channel"], registry=r
        )
        self.webhook_events = Counter(
            "actionlist_webhook_events_total", "Event Webhook events by type and outcome",
            ["event", "outcome"], registry=r,
        )
        self.campaign_recipients = Counter(
            "actionlist_campaign_recipients_total", "Campaign recipients by result",
            ["result"], registry=r,
        )


def metrics() -> Metrics:
    m: Metrics = current_app.extensions["metrics"]
    return m


class ContextFilter(logging.Filter):
    """Adds `request_id` and `job_id` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        job = get_current_job()
        record.job_id = job.id if job is not None else "-"
        return True


# The public routes whose path segment after the prefix is a signed token. A path like
# `/preferences` (the form asking for a link) has no such segment and stays as it is.
TOKEN_PATHS = ("confirm", "unsubscribe", "preferences", "export", "view")
_TOKEN_IN_PATH = re.compile(rf"(/(?:{'|'.join(TOKEN_PATHS)})/)[^/?#\s\"']+")


def redact_tokens(text: str) -> str:
    """`text` with every `/<purpose>/<token>` written as `/<purpose>/[token]`."""
    return _TOKEN_IN_PATH.sub(r"\1[token]", text)


class RedactTokens(logging.Filter):
    """Formats the record's message and takes the link tokens out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class GunicornLogger(_GunicornBaseLogger):
    """Gunicorn's logger with `RedactTokens` on its access and error logs."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            if not any(isinstance(f, RedactTokens) for f in log.filters):
                log.addFilter(RedactTokens())


def configure_logging(app: Flask) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, ContextFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s job=%(job_id)s] "
                "%(message)s"
            )
        )
        handler.addFilter(ContextFilter())
        handler.addFilter(RedactTokens())
        root.addHandler(handler)
        root.setLevel(logging.INFO)

    @app.before_request
    def _start() -> None:
        g.request_id = secrets.token_hex(8)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        from flask import request

        response.headers["X-Request-Id"] = g.get("request_id", "")
        started = g.get("started")
        if started is not None:
            metrics().requests.labels(request.endpoint or "unknown").observe(
                time.perf_counter() - started
            )
        return response
