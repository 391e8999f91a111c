"""Which language a page or mail is in: the subscriber's, then `lang`, then the browser's."""

from __future__ import annotations

from flask import Flask, g, request
from flask_babel import get_locale, refresh

# The languages pages and mails exist in: the one list every form, import and renderer
# checks against (importable without a request or an app).
LOCALES = ("en", "es")


def use_locale(locale: str | None) -> str:
    """Render the rest of this request in `locale` (falls back to English)."""
    chosen = locale if locale in LOCALES else "en"
    g.locale = chosen
    refresh()  # Flask-Babel caches the locale per app context
    return chosen


def select_locale() -> str:
    chosen = g.get("locale") or request.args.get("lang") or request.form.get("lang")
    if chosen in LOCALES:
        return str(chosen)
    return request.accept_languages.best_match(list(LOCALES)) or "en"


def current_locale() -> str:
    return str(get_locale() or "en")


def init_app(app: Flask) -> None:
    @app.before_request
    def _fresh_locale() -> None:
        refresh()

    app.jinja_env.globals.update(get_locale=current_locale)
