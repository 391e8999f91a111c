"""Imports and exports in the admin: upload a CSV, choose its columns, watch it run.

Thin views over `service.imports`: the upload is stored and queued by `create_import`
(the API's function), the job is the CLI's importer, the report is `problems()`, and the
export is the CLI's `export_rows`. Column choices are applied by rewriting the upload's
header (`service.imports.columns`), so the importer needs no second way of reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import select

from .. import db
from ..db import parse_id
from ..imports.columns import CHOICES, preview, with_header
from ..imports.csvfile import FileError
from ..imports.export import csv_blocks, export_rows
from ..imports.progress import import_progress
from ..imports.uploads import create_import, problems
from ..lists import all_lists, list_by_slug
from ..models import Import, Role, SubscriptionStatus
from .access import actor, audit, found, staff_required
from .blueprint import bp

PREVIEW_BYTES = 64 * 1024
RECENT = 20


def _recent() -> list[Import]:
    return list(db.session().scalars(select(Import).order_by(Import.id.desc()).limit(RECENT)))



def _progress(row: Import) -> dict[str, Any]:
    """The import's progress, with the report link the API serves."""
    return import_progress(row, url_for("imports_api.import_report", import_id=row.id))

@bp.get("/imports")
@staff_required(Role.viewer)
def imports() -> Any:
    return _page({}, {})


def _page(values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Any:
    recent = _recent()
    return render_template(
        "admin/imports.html", lists=all_lists(db.session()), recent=recent, values=values,
        errors=errors, choices=CHOICES, statuses=[s.value for s in SubscriptionStatus],
        progress={row.id: _progress(row) for row in recent},
    ), status


@bp.post("/imports/preview")
@staff_required(Role.campaigner)
def import_preview() -> Any:
    """The header, the importer's guess per column and a few rows, from the file's start."""
    upload = request.files.get("file")
    if upload is None:
        return jsonify({"error": "Choose a CSV file."}), 422
    try:
        found = preview(upload.stream.read(PREVIEW_BYTES))
    except FileError as exc:
        return jsonify({"error": str(exc)}), 422
    return jsonify({"header": found.header, "guesses": found.guesses, "sample": found.sample})


@bp.post("/imports")
@staff_required(Role.campaigner)
def import_start() -> Any:
    form = request.form
    values: dict[str, Any] = {
        "list": form.get("list", ""),
        "confirmed": form.get("confirmed") == "on",
        "consent_note": form.get("consent_note", "").strip(),
    }
    errors: dict[str, str] = {}
    session = db.session()
    mailing_list = list_by_slug(session, values["list"])
    if mailing_list is None:
        errors["list"] = "Choose the list to import into."
    if values["confirmed"] and not values["consent_note"]:
        errors["consent_note"] = (
            "Say how these people gave their consent: it is kept in each one's consent record."
        )
    if values["consent_note"] and not values["confirmed"]:
        # As the API: a note vouches for consent, so it goes only with a confirmed import.
        errors["consent_note"] = (
            "A consent note goes with a confirmed import: tick the box above or clear the note."
        )
    if len(values["consent_note"]) > 2000:
        errors["consent_note"] = "At most 2,000 characters."
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = "Choose a CSV file."
    # The page's script counts the columns it offers a choice for: a plain number, and
    # never more than the fields the form sent.
    count = form.get("columns", "0") or "0"
    columns = 0 if count == "0" else parse_id(count)
    if columns is None or columns > len(form):
        errors["file"] = "Choose what each column holds again."
    if errors or mailing_list is None or upload is None or columns is None:
        return _page(values, errors, 422)
    choices = [form.get(f"column_{i}", "") for i in range(columns)]
    raw = cast(BinaryIO, upload.stream)
    try:
        stream = with_header(raw, choices) if choices else raw
        row = create_import(
            session, stream, upload.filename or "upload.csv", mailing_list,
            confirmed=values["confirmed"], consent_note=values["consent_note"], actor=actor(),
        )
    except FileError as exc:
        session.rollback()
        errors["file"] = str(exc)
        return _page(values, errors, 422)
    audit("import", "import", row.id, list=mailing_list.slug, filename=row.filename,
          confirmed=values["confirmed"], rows=row.total_rows)
    session.commit()
    flash(f"Import of {row.filename} started: {row.total_rows:,} rows.")
    return redirect(url_for("admin.import_detail", import_id=row.id), code=303)


def _import(import_id: int) -> Import:
    return found(db.session().get(Import, import_id))


@bp.get("/imports/<int:import_id>")
@staff_required(Role.viewer)
def import_detail(import_id: int) -> Any:
    row = _import(import_id)
    return render_template("admin/import.html", row=row, progress=_progress(row))


@bp.get("/imports/<int:import_id>/progress")
@staff_required(Role.viewer)
def import_progress_json(import_id: int) -> Any:
    return jsonify(_progress(_import(import_id)))


@bp.get("/imports/<int:import_id>/problems.csv")
@staff_required(Role.viewer)
def import_problems(import_id: int) -> Any:
    """The rows that were not imported: line number, address as written, reason."""
    row = _import(import_id)
    session = db.session()

    def lines() -> Iterator[list[object]]:
        yield ["line", "email", "reason"]
        for problem in problems(session, row.id):
            yield [problem.line, problem.email, problem.reason]

    return Response(
        stream_with_context(csv_blocks(lines())), mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="import-{row.id}-problems.csv"'},
    )


@bp.get("/export.csv")
@staff_required(Role.viewer)
def export_csv() -> Any:
    """A list's subscribers as CSV, streamed (the CLI's `actionlist export`)."""
    session = db.session()
    slug = request.args.get("list", "")
    mailing_list = list_by_slug(session, slug)
    if mailing_list is None:
        abort(404)
    statuses = [s for s in request.args.getlist("status") if s]
    if any(s not in SubscriptionStatus.__members__ for s in statuses):
        abort(400)
    audit("export", "list", mailing_list.id, statuses=statuses)
    session.commit()
    return Response(
        stream_with_context(csv_blocks(export_rows(session, mailing_list.id, statuses))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{mailing_list.slug}.csv"'},
    )
