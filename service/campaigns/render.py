"""Rendering a campaign: once per language variant, personalised by SendGrid substitutions.

Staff write the subject and body in Markdown or HTML and may use a few variables
(`{{ first_name }}`, `{{ state }}`, …). The source runs through a **sandboxed** Jinja
environment (`jinja2.sandbox.SandboxedEnvironment`): attribute tricks such as
`{{ ''.__class__ }}` render as nothing, and nothing but the variables below is in scope.

The variables are not filled per person. Each renders as a placeholder (`-@first_name@-`)
and the mail is rendered once per variant; every personalization then carries its own
`substitutions` for the placeholders that variant uses. The HTML part uses separate
placeholders (`-@first_name@h-`) whose values are HTML-escaped, so a subscriber named
`<script>` is text in the HTML part and stays readable in the plain-text part (the
unsubscribe and preferences links, which need no escaping, share one placeholder).
"""

from __future__ import annotations

import functools
import html as htmllib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import render_template
from flask_babel import force_locale
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from .. import config
from ..config import Settings
from ..i18n import LOCALES
from ..mail.compose import inline_css
from ..models import Campaign, ContentFormat

# Variables staff may use in subject and body; each comes from the subscriber's row.
PERSON_VARIABLES = ("first_name", "last_name", "email", "state", "postal_code")
# Links only the layout uses; every recipient has their own.
LINK_VARIABLES = ("unsubscribe_url", "preferences_url")
ALL_VARIABLES = PERSON_VARIABLES + LINK_VARIABLES

_env = SandboxedEnvironment(autoescape=False)
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")
_HREF = re.compile(r'href="(https?://[^"]+)"')
_TEXT_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
_PLACEHOLDER = re.compile(r"-@([a-z_]+)@(h?)-")


def placeholder(name: str, *, html: bool = False) -> str:
    return f"-@{name}@h-" if html else f"-@{name}@-"


class ContentError(ValueError):
    """Staff content that cannot be rendered (Jinja syntax errors and the like)."""


def check_template(source: str) -> None:
    """Raise ContentError if `source` is not a valid template (used for 422 answers)."""
    _fill(source)  # a trial render: syntax errors and sandbox violations surface here


@dataclass
class RenderedVariant:
    locale: str
    subject: str
    html: str
    text: str
    # Placeholder names used in subject/text, and in the HTML part.
    text_names: tuple[str, ...] = field(default_factory=tuple)
    html_names: tuple[str, ...] = field(default_factory=tuple)

    @functools.cached_property
    def _keys(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        return (tuple((placeholder(n), n) for n in self.text_names),
                tuple((placeholder(n, html=True), n) for n in self.html_names))

    def uses(self, name: str) -> bool:
        return name in self.text_names or name in self.html_names

    def substitutions(self, values: dict[str, str]) -> dict[str, str]:
        """This recipient's placeholder values (HTML-escaped for the HTML part)."""
        text_keys, html_keys = self._keys
        subs = {key: values.get(name, "") for key, name in text_keys}
        for key, name in html_keys:
            subs[key] = htmllib.escape(values.get(name, ""))
        return subs


def _content_for(campaign: Campaign, locale: str) -> tuple[str, str]:
    variant = (campaign.variants or {}).get(locale) if locale != "en" else None
    if variant and variant.get("body"):
        return str(variant.get("subject") or campaign.subject), str(variant["body"])
    return campaign.subject, campaign.body


def _fill(source: str) -> str:
    context = {name: placeholder(name) for name in PERSON_VARIABLES}
    try:
        return _env.from_string(source).render(context)
    except TemplateError as exc:
        raise ContentError(f"Template error: {exc}") from exc


def add_source_code(url: str, code: str) -> str:
    """Append `source=code` to a link (the advocacy practice of tracking source codes)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "source"]
    query.append(("source", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of staff HTML (links kept as `text (url)`)."""
    text = re.sub(r'<a\s[^>]*href="([^"]+)"[^>]*>(.*?)</a>', r"\2 (\1)", markup, flags=re.S | re.I)
    text = re.sub(r"<(br|/p|/h\d|/li|/tr|/div)\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"<li[^>]*>", "- ", text, flags=re.I)
    text = re.sub(r"<[^>]+>", "", text)
    text = htmllib.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()


def render_variant(
    campaign: Campaign, locale: str, settings: Settings | None = None, *, test: bool = False
) -> RenderedVariant:
    settings = settings or config.settings()
    subject_src, body_src = _content_for(campaign, locale)
    subject = " ".join(_fill(subject_src).split())
    body = _fill(body_src)
    if campaign.format == ContentFormat.markdown:
        body_html = _markdown.render(body)
        body_text = body
    else:
        body_html = body
        body_text = html_to_text(body)
    if campaign.source_code:
        code = campaign.source_code

        def with_code(match: re.Match[str]) -> str:
            url = add_source_code(htmllib.unescape(match.group(1)), code)
            return f'href="{htmllib.escape(url)}"'

        body_html = _HREF.sub(with_code, body_html)
        body_text = _TEXT_URL.sub(lambda m: add_source_code(m.group(0), code), body_text)
    # In the HTML part every placeholder is the escaped kind.
    body_html = _PLACEHOLDER.sub(lambda m: placeholder(m.group(1), html=True), body_html)
    if test:
        subject = f"[TEST] {subject}"
    context = {
        "org_name": settings.org_name,
        "org_postal_address": settings.org_postal_address,
        "preheader": campaign.preheader,
        "subject": subject,
    }
    layout = f"email/{campaign.kind.value}.html"
    # Our links are PUBLIC_URL + a URL-safe token: when PUBLIC_URL needs no escaping, the
    # HTML part shares the plain-text placeholders and each recipient's request carries
    # their two links once instead of twice (a quarter of its size).
    link_html = htmllib.escape(settings.public_url) != settings.public_url
    with force_locale(locale):
        html = render_template(
            layout,
            body=Markup(body_html),  # noqa: S704 - staff content, rendered in the sandbox
            unsubscribe_url=placeholder("unsubscribe_url", html=link_html),
            preferences_url=placeholder("preferences_url", html=link_html),
            **context,
        )
        text = render_template(
            "email/campaign.txt",
            body=body_text,
            unsubscribe_url=placeholder("unsubscribe_url"),
            preferences_url=placeholder("preferences_url"),
            **context,
        )
    html = inline_css(html)
    text_names = sorted({m.group(1) for m in _PLACEHOLDER.finditer(subject + text + html)
                         if not m.group(2) and m.group(1) in ALL_VARIABLES})
    html_names = sorted({m.group(1) for m in _PLACEHOLDER.finditer(html)
                         if m.group(2) and m.group(1) in ALL_VARIABLES})
    return RenderedVariant(locale, subject, html, text, tuple(text_names), tuple(html_names))


_cache: dict[tuple[int, str, str, bool], RenderedVariant] = {}


def cached_variant(campaign: Campaign, locale: str, *, test: bool = False) -> RenderedVariant:
    """Render a variant once per process (keyed on the campaign's last update)."""
    key = (campaign.id, campaign.updated_at.isoformat(), locale, test)
    variant = _cache.get(key)
    if variant is None:
        if len(_cache) > 32:
            _cache.clear()
        variant = _cache[key] = render_variant(campaign, locale, test=test)
    return variant


def variant_locale(subscriber_locale: str) -> str:
    return subscriber_locale if subscriber_locale in LOCALES else "en"
