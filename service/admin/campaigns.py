"""Campaign pages: list, editor with live preview and audience count, test send, send or
schedule, live progress, pause / resume / cancel, statistics.

Thin views over `service.campaigns`: the editor's form goes through the API's own schema
(`drafts.CampaignIn`), writes and actions go through `drafts` (as the API and the CLI do),
previews through the real renderer, counts through `audience`, figures through
`webhooks.stats`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from werkzeug.datastructures import MultiDict

from .. import db
from ..campaigns import drafts, segments
from ..campaigns.abdecide import AbRefused, BadWinner, decide
from ..campaigns.abtest import summary as ab_summary
from ..campaigns.audience import audience_count, count_audience
from ..campaigns.drafts import CampaignIn, CampaignPatch, SendIn, TestIn
from ..campaigns.progress import campaign_progress
from ..campaigns.render import ContentError
from ..campaigns.saved import UnknownSegment
from ..campaigns.sending import counts_by_campaign, schedule
from ..db import parse_id
from ..i18n import LOCALES
from ..lists import all_lists
from ..models import Campaign, CampaignKind, CampaignStatus, ContentFormat, Role, SavedSegment
from ..webhooks.stats import FIGURES, campaign_stats
from .access import actor, found_by_id, staff_required
from .blueprint import bp
from .charts import bar_chart
from .params import id_arg
from .segment_form import (
    builder_choices,
    segment_error_field,
    segment_form_values,
    segment_input,
    segment_values,
    words,
)

PAGE_SIZE = 50
# Form field that shows an error for a (dotted) schema field.
_ERROR_FIELD = {"variants.es.subject": "es_subject", "variants.es.body": "es_body",
                "segment.states": "states", "segment.postal_prefixes": "postal_prefixes",
                "segment.locales": "locales",
                # A/B subject test
                "ab_test": "ab_subjects", "ab_test.subjects": "ab_subjects",
                "ab_test.sample_percent": "ab_sample_percent",
                "ab_test.metric": "ab_metric", "ab_test.wait_minutes": "ab_wait_minutes",
                "ab_test.subjects.en": "ab_subjects", "ab_test.subjects.es": "ab_subjects_es",
                **{f"ab_test.subjects.{i}{suffix}": "ab_subjects_es" if suffix == ".es"
                   else "ab_subjects" for i in range(5) for suffix in ("", ".en", ".es")}}
CHART_FIGURES = ("delivered", "opens", "clicks", "bounces", "unsubscribes")
MAX_CHART_HOURS = 24 * 14
MIN_CHART_HOURS = 24
BIG_CAMPAIGN = 100_000  # deliveries


# ------------------------------------------------------------------ form ⇄ schema



def form_values(form: Any) -> dict[str, Any]:
    """The editor's fields as typed (to show the form again)."""
    return {
        "name": form.get("name", ""), "kind": form.get("kind", "newsletter"),
        "subject": form.get("subject", ""), "preheader": form.get("preheader", ""),
        "body": form.get("body", ""), "format": form.get("format", "markdown"),
        "source_code": form.get("source_code", ""), "archive": form.get("archive") == "on",
        "action_url": form.get("action_url", ""),
        "max_per_minute": form.get("max_per_minute", ""),
        "es_subject": form.get("es_subject", ""), "es_body": form.get("es_body", ""),
        "lists": form.getlist("lists"), **segment_form_values(form),
        **ab_form_values(form),
    }


# A/B subject test: the editor's fields (subjects one per line, Spanish ones optional).
AB_DEFAULTS = {"ab_on": False, "ab_subjects": "", "ab_subjects_es": "",
               "ab_sample_percent": "20", "ab_metric": "unique_opens", "ab_wait_minutes": "60"}


def ab_form_values(form: Any) -> dict[str, Any]:
    return {key: (bool(form.get(key)) if key == "ab_on" else form.get(key, default))
            for key, default in AB_DEFAULTS.items()}


def ab_campaign_values(ab: dict[str, Any] | None) -> dict[str, Any]:
    if not ab:
        return dict(AB_DEFAULTS)
    subjects = ab.get("subjects") or []
    per_language = any(isinstance(s, dict) for s in subjects)
    return {
        "ab_on": True,
        "ab_subjects": "\n".join(s.get("en", "") if isinstance(s, dict) else s
                                 for s in subjects),
        "ab_subjects_es": "\n".join(s.get("es", "") if isinstance(s, dict) else s
                                    for s in subjects) if per_language else "",
        "ab_sample_percent": str(ab.get("sample_percent", "")),
        "ab_metric": ab.get("metric", "unique_opens"),
        "ab_wait_minutes": str(ab.get("wait_minutes", "")),
    }


def _number(text: str) -> Any:
    """A whole number as typed, or the text itself (for the schema to refuse)."""
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 10 else text


def ab_schema_input(values: dict[str, Any]) -> dict[str, Any] | None:
    """The editor's A/B fields → the API's `ab_test` (None when the test is off)."""
    if not values.get("ab_on"):
        return None
    english = [line.strip() for line in values["ab_subjects"].splitlines() if line.strip()]
    spanish = [line.strip() for line in values["ab_subjects_es"].splitlines() if line.strip()]
    subjects: list[Any] = list(english)
    if spanish:
        # Unequal lists pair up as far as they go; a missing one is refused by the schema.
        subjects = [{"en": en, "es": spanish[i] if i < len(spanish) else ""}
                    for i, en in enumerate(english)]
    return {"subjects": subjects, "sample_percent": _number(values["ab_sample_percent"]),
            "metric": values["ab_metric"], "wait_minutes": _number(values["ab_wait_minutes"])}


def campaign_values(c: Campaign | None) -> dict[str, Any]:
    if c is None:
        return form_values(MultiDict())
    es = (c.variants or {}).get("es") or {}
    segment = {} if c.segment_id is not None else (c.segment or {})
    return {
        "name": c.name, "kind": c.kind.value, "subject": c.subject, "preheader": c.preheader,
        "body": c.body, "format": c.format.value, "source_code": c.source_code,
        "archive": c.archive, "action_url": c.action_url,
        "max_per_minute": str(c.max_per_minute or ""),
        "es_subject": es.get("subject", ""), "es_body": es.get("body", ""),
        "lists": [ml.slug for ml in c.lists],
        **segment_values(segment, c.segment_id),
        **ab_campaign_values(c.ab_test),
    }


def schema_input(values: dict[str, Any]) -> dict[str, Any]:
    """Form values → the JSON the API takes (an empty Spanish version means none)."""
    data: dict[str, Any] = {
        key: values[key]
        for key in ("name", "kind", "subject", "preheader", "body", "format", "source_code",
                    "action_url")
    }
    data["lists"] = list(values["lists"])
    data["archive"] = bool(values.get("archive"))
    # (digits become a number; anything else is handed on for the schema to refuse)
    cap = str(values.get("max_per_minute") or "").strip()
    data["max_per_minute"] = None if not cap else int(cap) if cap.isascii() and \
        cap.isdigit() and len(cap) < 10 else cap
    if values.get("segment_id"):
        data["segment_id"] = parse_id(values["segment_id"]) or -1
    data["segment"] = segment_input(values)
    if values["es_subject"].strip() or values["es_body"].strip():
        data["variants"] = {"es": {"subject": values["es_subject"], "body": values["es_body"]}}
    else:
        data["variants"] = {}
    data["ab_test"] = ab_schema_input(values)
    return data


def _flatten(messages: Any, path: tuple[str, ...] = ()) -> dict[str, str]:
    """marshmallow's nested messages → {form field: first message}.

    `{"segment": {"states": {0: ["Length must be 2."]}}}` → `{"states": "Length must be 2."}`
    (list indexes are dropped; `_ERROR_FIELD` maps dotted schema names to form fields).
    """
    out: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            sub = path if str(key).isdigit() else (*path, *str(key).split("."))
            for field, message in _flatten(value, sub).items():
                out.setdefault(field, message)
    elif isinstance(messages, list):
        texts = [m for m in messages if isinstance(m, str)]
        if texts:
            dotted = ".".join(path)
            out[_ERROR_FIELD.get(dotted) or segment_error_field(dotted)] = texts[0]
        for item in messages:
            if not isinstance(item, str):
                for field, message in _flatten(item, path).items():
                    out.setdefault(field, message)
    return out


def load_form(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        return CampaignIn().load(schema_input(values)), {}
    except ValidationError as exc:
        return {}, _flatten(exc.messages)


# What a preview renders, and the form fields whose errors it reports.
PREVIEW_FIELDS = ("kind", "subject", "preheader", "body", "format", "source_code", "variants")
TEMPLATE_FIELDS = ("subject", "body", "es_subject", "es_body")


def load_preview(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as far as it renders: what is filled in and valid (the live preview runs
    while staff are still typing, before the name or the lists are set)."""
    data = {key: value for key, value in schema_input(values).items()
            if key in PREVIEW_FIELDS and value not in ("", {})}
    schema = CampaignPatch(only=PREVIEW_FIELDS)
    while True:
        try:
            return schema.load(data), {}
        except ValidationError as exc:
            errors = _flatten(exc.messages)
            shown = {k: v for k, v in errors.items() if k in TEMPLATE_FIELDS}
            if shown:
                return {}, shown
            # Leave out what is not valid yet (a field-level error skips the template
            # checks, so this loads again) and render the rest.
            data = {key: value for key, value in data.items() if key not in exc.messages}


# ------------------------------------------------------------------ pages


def _get(campaign_id: int) -> Campaign:
    return found_by_id(Campaign, campaign_id, selectinload(Campaign.lists))


@bp.get("/campaigns")
@staff_required(Role.viewer)
def campaigns() -> Any:
    session = db.session()
    before = id_arg("before")
    query = (select(Campaign).options(selectinload(Campaign.lists))
             .order_by(Campaign.id.desc()).limit(PAGE_SIZE + 1))
    if before is not None:
        query = query.where(Campaign.id < before)
    rows = list(session.scalars(query))
    next_before = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    return render_template(
        "admin/campaigns.html", campaigns=rows, next_before=next_before, before=before,
        counts=counts_by_campaign(session, [c.id for c in rows]),
    )


def _editor(campaign: Campaign | None, values: dict[str, Any], errors: dict[str, str],
            status: int = 200) -> Any:
    return render_template(
        "admin/campaign_form.html", campaign=campaign, values=values, errors=errors,
        lists=all_lists(db.session()), kinds=[k.value for k in CampaignKind],
        formats=[f.value for f in ContentFormat], **builder_choices(db.session()),
    ), status


@bp.route("/campaigns/new", methods=["GET", "POST"])
@staff_required(Role.editor)
def campaign_new() -> Any:
    if request.method == "GET":
        return _editor(None, campaign_values(None), {})
    return _save_draft(None, lambda session, data: drafts.create_draft(session, data, actor()))


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@staff_required(Role.editor)
def campaign_edit(campaign_id: int) -> Any:
    campaign = _get(campaign_id)
    if campaign.status != CampaignStatus.draft:
        abort(409, description=str(drafts.NotADraft(campaign.status)))
    if request.method == "GET":
        return _editor(campaign, campaign_values(campaign), {})

    def save(session: Session, data: dict[str, Any]) -> Campaign:
        drafts.edit_draft(session, campaign, data, actor())
        return campaign

    return _save_draft(campaign, save)


def _save_draft(
    campaign: Campaign | None, save: Callable[[Session, dict[str, Any]], Campaign]
) -> Any:
    """The editor's POST: check the form, `save` the draft, or show the form again."""
    values = form_values(request.form)
    data, errors = load_form(values)
    if errors:
        return _editor(campaign, values, errors, 422)
    session = db.session()
    try:
        saved = save(session, data)
    except drafts.NotADraft as exc:
        session.rollback()
        abort(409, description=str(exc))
    except drafts.UnknownLists as exc:
        session.rollback()
        return _editor(campaign, values, {"lists": str(exc)}, 422)
    except UnknownSegment as exc:
        session.rollback()
        return _editor(campaign, values, {"segment_id": str(exc)}, 422)
    except segments.SegmentError as exc:
        session.rollback()
        return _editor(campaign, values, _flatten(
            {f"segment.{k}": v for k, v in exc.errors.items()}), 422)
    session.commit()
    flash(f"Draft “{saved.name}” saved.")
    return redirect(url_for("admin.campaign_detail", campaign_id=saved.id))


@bp.post("/campaigns/preview")
@staff_required(Role.editor)
def campaign_preview() -> Any:
    """The editor's live preview: the unsaved form rendered by the real renderer, as JSON."""
    locale = request.args.get("lang", "en")
    if locale not in LOCALES:
        abort(404)
    data, errors = load_preview(form_values(request.form))
    if errors:
        return jsonify({"errors": errors}), 422
    try:
        shown = drafts.preview(drafts.unsaved(data), locale)
    except ContentError as exc:
        return jsonify({"errors": {"body": str(exc)}}), 422
    has_own = locale == "en" or bool((data.get("variants") or {}).get(locale))
    return jsonify({**shown, "translated": has_own})


@bp.post("/campaigns/audience")
@staff_required(Role.editor)
def campaign_audience() -> Any:
    """The editor's live audience count for the lists and segment on the form."""
    values = form_values(request.form)
    session = db.session()
    try:
        lists = drafts.resolve_lists(session, values["lists"])
        raw = schema_input(values)
        if "segment_id" in raw:
            row = session.get(SavedSegment, raw["segment_id"]) if raw["segment_id"] > 0 else None
            if row is None:
                return jsonify({"errors": {"segment_id": "No such saved segment."}}), 422
            raw["segment"] = row.segment
        segment = segments.load(session, raw["segment"]).as_json()
    except drafts.UnknownLists as exc:
        return jsonify({"errors": {"lists": str(exc)}}), 422
    except segments.SegmentError as exc:
        return jsonify({"errors": _flatten({f"segment.{k}": v for k, v in exc.errors.items()})
                        }), 422
    return jsonify({"count": count_audience(session, [ml.id for ml in lists], segment)})


def _detail(campaign: Campaign, *, errors: dict[str, str] | None = None,
            status: int = 200, test_emails: str = "") -> Any:
    session = db.session()
    progress = campaign_progress(session, campaign)
    return render_template(
        "admin/campaign.html", campaign=campaign, progress=progress,
        schedule=schedule(session, campaign),
        audience=audience_count(session, campaign) if campaign.status in (
            CampaignStatus.draft, CampaignStatus.scheduled) else None,
        has_spanish=bool(((campaign.variants or {}).get("es") or {}).get("body")),
        errors=errors or {}, test_emails=test_emails, ab=ab_summary(session, campaign),
    ), status


@bp.get("/campaigns/<int:campaign_id>")
@staff_required(Role.viewer)
def campaign_detail(campaign_id: int) -> Any:
    return _detail(_get(campaign_id))


@bp.get("/campaigns/<int:campaign_id>/mail/<lang>")
@staff_required(Role.viewer)
def campaign_mail(campaign_id: int, lang: str) -> Any:
    """The saved campaign's mail in one language, for the preview frame of the detail page."""
    if lang not in LOCALES:
        abort(404)
    try:
        shown = drafts.preview(_get(campaign_id), lang)
    except ContentError as exc:
        return Response(str(exc), status=422, mimetype="text/plain")
    response = Response(shown["html"], mimetype="text/html")
    # Staff HTML runs in no origin of ours, even when the URL is opened directly.
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


@bp.get("/campaigns/<int:campaign_id>/progress")
@staff_required(Role.viewer)
def campaign_progress_json(campaign_id: int) -> Any:
    progress = campaign_progress(db.session(), _get(campaign_id))
    # One poll takes ~2.5 ms at a million deliveries (bench/campaign_progress.py);
    # campaigns above BIG_CAMPAIGN are still polled every 3 s, the others every second.
    poll_ms = 1000 if progress.total <= BIG_CAMPAIGN else 3000
    campaign = _get(campaign_id)
    return jsonify({**progress.as_dict(), "poll_ms": poll_ms,
                    "ab": ab_summary(db.session(), campaign) if campaign.ab_test else None})


@bp.post("/campaigns/<int:campaign_id>/test")
@staff_required(Role.campaigner)
def campaign_test(campaign_id: int) -> Any:
    campaign = _get(campaign_id)
    typed = request.form.get("emails", "")
    try:
        emails = TestIn().load({"emails": words(typed)})["emails"]
    except ValidationError as exc:
        return _detail(campaign, errors=_flatten(exc.messages), status=422, test_emails=typed)
    session = db.session()
    try:
        drafts.queue_test(session, campaign, emails, actor())
    except drafts.Unrenderable as exc:
        session.rollback()
        return _detail(campaign, errors={"emails": str(exc)}, status=422, test_emails=typed)
    session.commit()
    flash(f"Test send queued to {', '.join(emails)}.")
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


def _act(campaign_id: int, action: str, send_at: datetime | None = None,
         send_at_local: str | None = None) -> Any:
    session = db.session()
    campaign = _get(campaign_id)
    try:
        drafts.act(session, campaign, action, actor(), send_at, send_at_local)
    except drafts.IllegalTransition as exc:
        session.rollback()
        return _detail(_get(campaign_id), errors={"action": str(exc)}, status=409)
    except (drafts.NoLists, drafts.LocalHourWithTest) as exc:
        session.rollback()
        return _detail(_get(campaign_id), errors={"action": str(exc)}, status=422)
    session.commit()
    done = {"send": "Sending started." if send_at is None else
            f"Scheduled for {send_at:%Y-%m-%d %H:%M} UTC.",
            "local": _("Scheduled for %(hour)s in each recipient's time zone.",
                       hour=(send_at_local or "").replace("T", " ")),
            "pause": "Paused.", "resume": "Resumed.", "cancel": "Cancelled."}
    flash(done["local" if send_at_local else action])
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/send")
@staff_required(Role.campaigner)
def campaign_send(campaign_id: int) -> Any:
    """Send now, at the UTC time of the schedule field, or at a local hour (the API's
    SendIn reads both)."""
    if request.form.get("mode") == "local":
        return _send_at_local(campaign_id, request.form.get("send_at_local", "").strip())
    when = request.form.get("send_at", "").strip() if request.form.get("mode") == "schedule" \
        else ""
    send_at = None
    if when:
        try:
            send_at = SendIn().load({"send_at": when})["send_at"]
        except ValidationError as exc:
            typed_wrong = "Not a valid datetime." in str(exc.messages)
            errors = {"send_at": "Give a date and time."} if typed_wrong else _flatten(
                exc.messages)
            return _detail(_get(campaign_id), errors=errors, status=422)
    elif request.form.get("mode") == "schedule":
        return _detail(_get(campaign_id), errors={"send_at": "Give a date and time."},
                       status=422)
    return _act(campaign_id, "send", send_at)


def _send_at_local(campaign_id: int, typed: str) -> Any:
    """The local-hour form (a browser's datetime-local may add seconds: cut to minutes)."""
    value = typed[:16] if len(typed) == 19 and typed.endswith(":00") else typed
    try:
        SendIn().load({"send_at_local": value})
    except ValidationError as exc:
        errors = _flatten(exc.messages)
        return _detail(_get(campaign_id), errors={
            "send_at_local": errors.get("send_at_local") or _("Give a date and time.")},
            status=422)
    return _act(campaign_id, "send", send_at_local=value)


@bp.post("/campaigns/<int:campaign_id>/pause")
@staff_required(Role.campaigner)
def campaign_pause(campaign_id: int) -> Any:
    return _act(campaign_id, "pause")


@bp.post("/campaigns/<int:campaign_id>/resume")
@staff_required(Role.campaigner)
def campaign_resume(campaign_id: int) -> Any:
    return _act(campaign_id, "resume")


@bp.post("/campaigns/<int:campaign_id>/cancel")
@staff_required(Role.campaigner)
def campaign_cancel(campaign_id: int) -> Any:
    return _act(campaign_id, "cancel")


@bp.post("/campaigns/<int:campaign_id>/ab/decide")
@staff_required(Role.campaigner)
def campaign_ab_decide(campaign_id: int) -> Any:
    """"Pick this winner": the A/B test's subject `winner` goes to the rest now."""
    session = db.session()
    campaign = _get(campaign_id)
    typed = request.form.get("winner", "")
    try:
        decide(session, campaign, int(typed) if typed.isdigit() and len(typed) < 3 else -1,
               actor())
    except (AbRefused, BadWinner) as exc:
        session.rollback()
        return _detail(_get(campaign_id), errors={"action": str(exc)},
                       status=409 if isinstance(exc, AbRefused) else 422)
    session.commit()
    flash(_("Winner chosen: the rest of the audience gets subject %(n)s.",
            n=int(typed) + 1))
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign_id))


# ------------------------------------------------------------------ statistics


def hourly_series(hourly: list[dict[str, Any]], figure: str) -> tuple[list[datetime], list[int]]:
    """Every hour from the first event to the last (at least a day, at most two weeks),
    gaps as zero."""
    by_hour = {datetime.fromisoformat(row["hour"]): int(row.get(figure, 0)) for row in hourly}
    if not by_hour:
        return [], []
    first, last = min(by_hour), max(by_hour)
    first = max(first, last - timedelta(hours=MAX_CHART_HOURS - 1))
    # At least a day on the axis: one busy hour is a bar, not the whole chart.
    last = max(last, first + timedelta(hours=MIN_CHART_HOURS - 1))
    hours: list[datetime] = []
    moment = first
    while moment <= last:
        hours.append(moment)
        moment += timedelta(hours=1)
    return hours, [by_hour.get(h, 0) for h in hours]


@bp.get("/campaigns/<int:campaign_id>/stats")
@staff_required(Role.viewer)
def campaign_stats_page(campaign_id: int) -> Any:
    campaign = _get(campaign_id)
    figure = request.args.get("figure", "delivered")
    if figure not in FIGURES:
        figure = "delivered"
    stats = campaign_stats(db.session(), campaign.id)
    hours, values = hourly_series(stats["hourly"], figure)
    chart = bar_chart(hours, values, fmt=lambda hour: f"{hour:%Y-%m-%d %H:00} UTC")
    return render_template(
        "admin/campaign_stats.html", campaign=campaign, stats=stats, figure=figure,
        chart_figures=CHART_FIGURES, chart=chart,
        progress=campaign_progress(db.session(), campaign),
    )
