"""Staff API: `POST /api/v1/imports`, `GET /api/v1/imports[/<id>[/report.csv]]` and
`GET /api/v1/subscribers/export.csv`.

Thin views over `uploads` (store the upload, queue the job), the import row (progress)
and `export`. campaigner: start an import; viewer: read progress, reports, exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, g, request, stream_with_context, url_for
from flask_smorest import abort
from sqlalchemy import select

from .. import db
from ..auth import require_role
from ..db import utcnow
from ..extensions import ApiBlueprint
from ..imports.csvfile import FileError
from ..imports.export import csv_blocks, export_rows
from ..imports.progress import import_summary
from ..imports.uploads import create_import, problems
from ..lists import list_by_slug
from ..models import Import, Role, SubscriptionStatus
from .refusals import found, refused_as

blp = ApiBlueprint("imports_api", __name__, url_prefix="/api/v1",
                description="Subscriber imports (CSV upload, run as a job) and exports")

NOTE_MAX = 2000
TRUE = {"1", "true", "yes", "on"}
MULTIPART = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "list"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "CSV, UTF-8 (BOM optional), header row."},
                    "list": {"type": "string", "description": "Slug of the list."},
                    "confirmed": {"type": "boolean",
                                  "description": "Subscribe as confirmed (needs consent_note)."},
                    "consent_note": {"type": "string",
                                     "description": "Where the prior consent comes from."},
                },
            }
        }
    }
}


def import_out(row: Import) -> dict[str, Any]:
    """An import as the API shows it, with the link to its report."""
    return import_summary(row, url_for("imports_api.import_report", import_id=row.id))


def _get(import_id: int) -> Import:
    return found(db.session().get(Import, import_id), "No such import.")


def _csv_response(blocks: Iterable[str], filename: str) -> Response:
    response = Response(stream_with_context(iter(blocks)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/imports", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}], requestBody=MULTIPART,
         responses={"202": {"description": "Stored and queued; poll GET /imports/<id>."}})
@require_role(Role.campaigner)
def start_import() -> Any:
    """Upload a CSV and import it into a list as a background job."""
    form = request.form
    errors: dict[str, list[str]] = {}
    session = db.session()
    slug = form.get("list", "").strip()
    mailing_list = list_by_slug(session, slug)
    if mailing_list is None:
        errors["list"] = ["Unknown list." if slug else "Name the list to import into."]
    confirmed = form.get("confirmed", "").strip().lower() in TRUE
    note = form.get("consent_note", "").strip()
    if confirmed and not note:
        errors["consent_note"] = ["A confirmed import needs a note saying where consent "
                                  "comes from."]
    if note and not confirmed:
        errors["consent_note"] = ["Only a confirmed import takes a consent note."]
    if len(note) > NOTE_MAX:
        errors["consent_note"] = [f"At most {NOTE_MAX} characters."]
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = ["Attach the CSV file as the multipart field `file`."]
    if errors or mailing_list is None or upload is None:
        abort(422, errors=errors)
    assert mailing_list is not None and upload is not None
    with refused_as(FileError, 422, "file"):
        row = create_import(session, upload.stream, upload.filename or "upload.csv",
                            mailing_list, confirmed=confirmed, consent_note=note,
                            actor=g.actor)
    session.commit()
    return import_out(row), 202


@blp.route("/imports", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
def list_imports() -> Any:
    """The 50 most recent imports, newest first."""
    rows = db.session().scalars(select(Import).order_by(Import.id.desc()).limit(50))
    return [import_out(row) for row in rows]


@blp.route("/imports/<int:import_id>", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
def get_import(import_id: int) -> Any:
    """Status (queued, running, done, failed), rows processed of total, counts."""
    return import_out(_get(import_id))


@blp.route("/imports/<int:import_id>/report.csv", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
def import_report(import_id: int) -> Any:
    """The rows not imported (`line,email,reason`), as CSV."""
    row = _get(import_id)

    def lines() -> Iterator[list[str]]:
        yield ["line", "email", "reason"]
        for problem in problems(db.session(), row.id):
            yield [str(problem.line), problem.email, problem.reason]

    return _csv_response(csv_blocks(lines()), f"import-{row.id}-report.csv")


@blp.route("/subscribers/export.csv", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}], parameters=[
    {"name": "list", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "status", "in": "query", "required": False,
     "description": "Repeatable or comma-separated: pending, confirmed, unsubscribed.",
     "schema": {"type": "array", "items": {"type": "string"}}, "explode": True},
])
@require_role(Role.viewer)
def export_subscribers() -> Any:
    """The list's subscribers as CSV (the columns of `actionlist export`), streamed."""
    slug = request.args.get("list", "").strip()
    mailing_list = list_by_slug(db.session(), slug)
    if mailing_list is None:
        abort(422, errors={"list": ["Unknown list." if slug else "Name the list."]})
    assert mailing_list is not None
    statuses = [s.strip() for value in request.args.getlist("status")
                for s in value.split(",") if s.strip()]
    allowed = {s.value for s in SubscriptionStatus}
    if any(s not in allowed for s in statuses):
        abort(422, errors={"status": [f"Must be one of: {', '.join(sorted(allowed))}."]})
    stamp = utcnow().strftime("%Y%m%d")
    return _csv_response(
        csv_blocks(export_rows(db.session(), mailing_list.id, statuses)),
        f"{mailing_list.slug}-{stamp}.csv",
    )

