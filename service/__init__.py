"""actionlist: signups, campaigns and unsubscribes for an advocacy organisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from flask import Flask
from flask.cli import FlaskGroup
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints. Nothing else (no migrations)."""
    from . import db as dbmod
    from . import i18n
    from .extensions import (
        BoundedJSONProvider,
        IdConverter,
        api,
        babel,
        cors,
        csp_nonce,
        csrf,
        limiter,
        login_manager,
        security_headers,
    )
    from .mail.transport import transport_for
    from .observability import Metrics, configure_logging
    from .queue import TaskQueue, install_session_hooks
    from .webhooks import signature

    if config is None:
        load_dotenv(PROJECT_ROOT / ".env")
        settings = Settings.from_env()
    else:
        settings = Settings.from_env().with_overrides(config)

    app = Flask(__name__, instance_relative_config=True)
    app.json = BoundedJSONProvider(app)
    app.url_map.converters["int"] = IdConverter
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    settings = settings.resolved(app.instance_path)
    app.extensions["settings"] = settings
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        TESTING=settings.testing,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        MAX_FORM_MEMORY_SIZE=512 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not (settings.debug or settings.testing),
        REMEMBER_COOKIE_SECURE=not (settings.debug or settings.testing),
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_KEY_PREFIX=f"{settings.queue_prefix}limits",
        API_TITLE="actionlist API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        BABEL_DEFAULT_LOCALE="en",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
    )
    # Email layouts live in the top-level templates/ folder (templates/email/...).
    app.jinja_loader = ChoiceLoader(
        [FileSystemLoader(str(Path(__file__).parent / "templates")),
         FileSystemLoader(str(PROJECT_ROOT / "templates"))]
    )
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops,
            x_host=settings.proxy_hops,
        )

    database = dbmod.Database(settings.database_url)
    database.init_app(app)
    app.extensions["metrics"] = Metrics()
    app.extensions["mail_transport"] = transport_for(settings)
    app.extensions["queue"] = TaskQueue(app, settings)
    install_session_hooks(database.factory, app)
    configure_logging(app)

    limiter.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    from .auth import load_user

    login_manager.user_loader(load_user)
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.init_app(app)
    cors.init_app(
        app,
        resources={r"/api/v1/subscriptions": {"origins": list(settings.form_allowed_origins)}},
        methods=["POST", "OPTIONS"],
        allow_headers=["Content-Type"],
    )
    api.init_app(app)
    signature.init_app(app)

    app.jinja_env.globals.update(settings=settings, csp_nonce=csp_nonce)
    app.after_request(security_headers)
    _register_blueprints(app)
    _register_cli(app)
    _recover_when_embedded(app, settings)
    return app


def _register_blueprints(app: Flask) -> None:
    from . import admin, api, public
    from .extensions import login_manager

    public.register(app)
    api.register(app)
    app.register_blueprint(admin.bp)
    login_manager.login_view = "admin.login"


def _register_cli(app: Flask) -> None:
    from .cli import register

    register(app)


def _recover_when_embedded(app: Flask, settings: Settings) -> None:
    """In the embedded mode no worker runs recovery passes: the first request starts the
    campaign watchdog (now, and every lease while a campaign sends), looks for
    interrupted imports (now, and once more when a restarted one's lease has run out) and
    sends the confirmation mails a restart left queued (now, and once more when the claims
    of the process before have run out)."""
    from .queue import embedded_recovery
    from .subscriptions.confirmations import CLAIM_SECONDS, SEND_DUE

    embedded_recovery(app, "campaigns", "service.jobs.campaigns.watchdog")
    embedded_recovery(app, "imports", "service.jobs.imports.recover",
                      again_after=settings.import_lease_seconds + 1)
    embedded_recovery(app, "outgoing", "service.jobs.outgoing.sweep_at_start")
    embedded_recovery(app, "confirmations", SEND_DUE, again_after=CLAIM_SECONDS + 1)


main = FlaskGroup(create_app=lambda: create_app(),
                  help="actionlist: mailing service for advocacy.")


def settle_process() -> None:
    """Once a long-lived process (a gunicorn worker, `worker.py`) has loaded the app:
    build the ZIP table now (`service.postal`) rather than in the first request or job
    that needs it, then take everything loaded so far out of the cyclic garbage
    collector's passes (`gc.freeze`). Without it every full pass re-scans the app's
    ~170,000 long-lived objects, and work that allocates many (a webhook batch parses into
    5,000 dicts) triggers such passes: 33.4 ms per 5,000-event post instead of 26.0
    (`docs/benchmarks.md`)."""
    import gc

    from .postal import warm

    warm()
    gc.freeze()
