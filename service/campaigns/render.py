"""Rendering a campaign: once per language variant, personalised by SendGrid substitutions.

Staff write the subject and body in Markdown or HTML and may use a few variables
(`{{ first_name }}`, `{{ state }}`, …). The source runs through a **sandboxed** Jinja
environment (`jinja2.sandbox.ImmutableSandboxedEnvironment`): attribute tricks such as
`{{ ''.__class__ }}` render as nothing, nothing but the variables below is in scope, lists
and dicts cannot be changed, and no other template can be included or imported.

The sandbox does not bound the work a template asks for (`{{ 'x' * 10**9 }}`, nested
loops), so staff sources render in a separate process (a `pebble` pool) with a time budget
(`RENDER_SECONDS`), a memory ceiling (`RENDER_MEMORY`), a cap on the rendered size
(`MAX_RENDERED_CHARS`) and on `range()` (`MAX_RANGE`). A template over a limit, or one that
fails while rendering (`{{ 1/0 }}`), raises ContentError with a message for staff: the API
and the admin answer 422, and a campaign that meets one at send time fails.

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
import multiprocessing
import os
import re
import resource
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import render_template
from flask_babel import force_locale
from jinja2 import BaseLoader, Environment, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup
from pebble import ProcessExpired, ProcessPool

from .. import config
from ..config import Settings
from ..i18n import LOCALES
from ..mail.compose import inline_css
from ..models import Campaign, ContentFormat
from .abtest import subject_for

# Variables staff may use in subject and body; each comes from the subscriber's row.
PERSON_VARIABLES = ("first_name", "last_name", "email", "state", "postal_code")
# Links only the layout uses; every recipient has their own.
# (`view` is the recipient's part of their "view in browser" link, see
# tokens.view_token: the layout holds the campaign's part.)
LINK_VARIABLES = ("unsubscribe_url", "preferences_url", "view")
ALL_VARIABLES = PERSON_VARIABLES + LINK_VARIABLES

# Limits of one render of staff sources (a subject and a body together).
RENDER_SECONDS = 2.0  # wall clock, then the rendering process is killed
RENDER_MEMORY = 256 * 1024 * 1024  # bytes the rendering process may add to its own size
MAX_RENDERED_CHARS = 1_000_000  # per source; Gmail already clips a mail at ~100 KB
MAX_RANGE = 10_000  # numbers one range() may produce
RENDER_PROCESSES = 2


class _NoOtherTemplates(BaseLoader):
    """`{% include %}`, `{% import %}` and `{% extends %}` name templates staff cannot use."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None,
                                                                          Any]:
        raise TemplateNotFound(template, message=(
            f"a campaign cannot include, import or extend another template ({template!r})"))


def _bounded_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range() in a campaign is limited to {MAX_RANGE:,} numbers")
    return iter(numbers)


_env = ImmutableSandboxedEnvironment(autoescape=False, loader=_NoOtherTemplates())
_env.globals["range"] = _bounded_range
del _env.globals["lipsum"]  # unbounded work for no use in a mail
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")
_HREF = re.compile(r'href="(https?://[^"]+)"')
_TEXT_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
_PLACEHOLDER = re.compile(r"-@([a-z_]+)@(h?)-")


def placeholder(name: str, *, html: bool = False) -> str:
    return f"-@{name}@h-" if html else f"-@{name}@-"


class ContentError(ValueError):
    """Staff content that cannot be rendered (Jinja syntax errors and the like)."""


def template_errors(sources: Mapping[str, str]) -> dict[str, str]:
    """{name: message} for each of `sources` that cannot render (one trial render)."""
    results = _render_bounded(list(sources.values()))
    return {name: message for name, (ok, message) in zip(sources, results, strict=True)
            if not ok}


def fill_template(source: str) -> str:
    """`source` rendered with the variables as placeholders; ContentError if it cannot be."""
    return fill_templates([source])[0]


def fill_templates(sources: list[str]) -> list[str]:
    filled = []
    for ok, text in _render_bounded(sources):
        if not ok:
            raise ContentError(text)
        filled.append(text)
    return filled


def _limit_memory(extra: int) -> None:
    """Runs first in each rendering process: cap its address space at its size + `extra`."""
    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no /proc: the time budget still applies
        return
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def _render_source(source: str, max_chars: int, personal: bool = True) -> tuple[bool, str]:
    """(True, text) or (False, message for staff); runs in a rendering process.

    `personal`: the person variables render as placeholders (a mail); otherwise as empty
    text, so `{{ first_name or "friend" }}` shows its fallback (the public archive)."""
    context = {name: placeholder(name) if personal else "" for name in PERSON_VARIABLES}
    try:
        size, parts = 0, []
        for chunk in _env.from_string(source).generate(context):
            size += len(chunk)
            if size > max_chars:
                return False, f"The template renders to more than {max_chars:,} characters."
            parts.append(chunk)
        return True, "".join(parts)
    except MemoryError:
        return False, ("The template needs more memory than a campaign may use "
                       "(a huge repetition or loop?).")
    except TemplateError as exc:
        return False, f"Template error: {exc}"
    except Exception as exc:  # noqa: BLE001 - any runtime error is the template's
        return False, f"Template error: {type(exc).__name__}: {exc}"


_pool: tuple[int, ProcessPool] | None = None
_pool_lock = threading.Lock()


def _renderers() -> ProcessPool:
    """This process's pool of rendering processes (a new one after a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or not _pool[1].active:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            _pool = (os.getpid(), ProcessPool(
                max_workers=RENDER_PROCESSES, initializer=_limit_memory,
                initargs=(RENDER_MEMORY,), context=context))
        return _pool[1]


def _render_bounded(sources: list[str], personal: bool = True) -> list[tuple[bool, str]]:
    """Render each source in a rendering process (side by side), within the limits."""
    pool = _renderers()
    futures = [pool.submit(_render_source, RENDER_SECONDS, source, MAX_RENDERED_CHARS,
                           personal)
               for source in sources]
    results: list[tuple[bool, str]] = []
    for future in futures:
        try:
            results.append(future.result())
        except FutureTimeout:
            results.append((False, f"The template took longer than {RENDER_SECONDS:g} s to "
                                   "render (loops too large?)."))
        except ProcessExpired:
            results.append((False, "The template stopped the renderer (it needs too much "
                                   "memory?)."))
    return results


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

    def filled(self, values: dict[str, str]) -> dict[str, str]:
        """Subject, HTML and text with the placeholders filled from `values` (a staff
        preview fills them with SAMPLE_PERSON)."""
        subs = self.substitutions(values)

        def fill(text: str) -> str:
            for key, value in subs.items():
                text = text.replace(key, value)
            return text

        return {"subject": fill(self.subject), "html": fill(self.html), "text": fill(self.text)}


# What a staff preview fills the per-person variables with.
SAMPLE_PERSON = {
    "first_name": "Ana", "last_name": "García", "email": "ana@example.org",
    "state": "CA", "postal_code": "94110", "unsubscribe_url": "#unsubscribe",
    "preferences_url": "#preferences", "view": "",
}


def _content_for(campaign: Campaign, locale: str, ab: int | None = None) -> tuple[str, str]:
    """Subject and body sources of a language; `ab`: the A/B test's subject number."""
    variant = (campaign.variants or {}).get(locale) if locale != "en" else None
    if variant and variant.get("body"):
        subject, body = str(variant.get("subject") or campaign.subject), str(variant["body"])
    else:
        subject, body = campaign.subject, campaign.body
    if ab is not None and campaign.ab_test:
        subject = subject_for(campaign.ab_test, ab, locale)
    return subject, body


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


def _body_parts(campaign: Campaign, body: str) -> tuple[str, str]:
    """The HTML and plain-text parts of a rendered body (Markdown or HTML), with the
    campaign's source code on its links."""
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
    return body_html, body_text


def public_copy(campaign: Campaign, locale: str) -> tuple[str, str]:
    """(subject, body HTML) of the campaign in `locale` for everyone to read (the public
    archive): the person variables render as empty text, so a template's own fallback
    shows (`{{ first_name or "friend" }}`), and the mail's layout with its personal links
    is left out. ContentError if it cannot render."""
    subject_src, body_src = _content_for(campaign, locale)
    filled = []
    for ok, text in _render_bounded([subject_src, body_src], personal=False):
        if not ok:
            raise ContentError(text)
        filled.append(text)
    body_html, _text = _body_parts(campaign, filled[1])
    return " ".join(filled[0].split()), body_html


def render_variant(
    campaign: Campaign, locale: str, settings: Settings | None = None, *, test: bool = False,
    layout: str | None = None, ab: int | None = None,
) -> RenderedVariant:
    """The campaign's mail in `locale` with placeholders for the person and their links.

    A stored campaign (an id) carries a "view in browser" link (`view`); `layout`
    names another mail layout than the campaign kind's (a list's welcome)."""
    settings = settings or config.settings()
    subject_src, body_src = _content_for(campaign, locale, ab)
    subject, body = fill_templates([subject_src, body_src])
    subject = " ".join(subject.split())
    body_html, body_text = _body_parts(campaign, body)
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
    layout = layout or f"email/{campaign.kind.value}.html"
    # Our links are PUBLIC_URL + a URL-safe token: when PUBLIC_URL needs no escaping, the
    # HTML part shares the plain-text placeholders and each recipient's request carries
    # their two links once instead of twice (a quarter of its size).
    link_html = htmllib.escape(settings.public_url) != settings.public_url
    # The view link: the campaign's part here, the recipient's part a placeholder.
    view = f"{settings.public_url}/view/{campaign.id}." if campaign.id else ""
    with force_locale(locale):
        html = render_template(
            layout,
            body=Markup(body_html),  # noqa: S704 - staff content, rendered in the sandbox
            unsubscribe_url=placeholder("unsubscribe_url", html=link_html),
            preferences_url=placeholder("preferences_url", html=link_html),
            view_url=view + placeholder("view", html=link_html) if view else "",
            **context,
        )
        text = render_template(
            "email/campaign.txt",
            body=body_text,
            unsubscribe_url=placeholder("unsubscribe_url"),
            preferences_url=placeholder("preferences_url"),
            view_url=view + placeholder("view") if view else "",
            **context,
        )
    html = inline_css(html)
    text_names = sorted({m.group(1) for m in _PLACEHOLDER.finditer(subject + text + html)
                         if not m.group(2) and m.group(1) in ALL_VARIABLES})
    html_names = sorted({m.group(1) for m in _PLACEHOLDER.finditer(html)
                         if m.group(2) and m.group(1) in ALL_VARIABLES})
    return RenderedVariant(locale, subject, html, text, tuple(text_names), tuple(html_names))


_cache: dict[tuple[int, str, str, bool, int | None], RenderedVariant] = {}


def cached_variant(campaign: Campaign, locale: str, *, test: bool = False,
                   ab: int | None = None) -> RenderedVariant:
    """Render a variant once per process (keyed on the campaign's last update; `ab`: the
    A/B test's subject number)."""
    key = (campaign.id, campaign.updated_at.isoformat(), locale, test, ab)
    variant = _cache.get(key)
    if variant is None:
        if len(_cache) > 32:
            _cache.clear()
        variant = _cache[key] = render_variant(campaign, locale, test=test, ab=ab)
    return variant


def variant_locale(subscriber_locale: str) -> str:
    return subscriber_locale if subscriber_locale in LOCALES else "en"
