"""/api/v1/lists: read every list (viewer); create and edit lists (admin)."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_smorest import abort

from .. import db
from ..auth import require_role
from ..campaigns.list_settings import (
    ListInputError,
    SlugTaken,
    create_list,
    list_out,
    read_list_input,
    update_list,
)
from ..extensions import ApiBlueprint
from ..lists import all_lists, list_counts
from ..models import MailingList, Role
from .refusals import found
from .schemas import ListIn, ListOut

blp = ApiBlueprint("lists_api", __name__, url_prefix="/api/v1", description="Mailing lists")


@blp.route("/lists", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.response(200, ListOut(many=True))
def get_lists() -> Any:
    """All lists with their subscriber counts and welcome mails."""
    session = db.session()
    counts = list_counts(session)
    return [list_out(ml, counts.get(ml.id)) for ml in all_lists(session)]


def _json_body() -> object:
    body = request.get_json(silent=True)
    if body is None:
        abort(422, errors={"json": ["Send a JSON object."]})
    return body


def _write(ml: MailingList | None) -> MailingList:
    session = db.session()
    try:
        values = read_list_input(session, _json_body(), ml)
        if ml is None:
            ml = create_list(session, values, g.actor)
        else:
            update_list(session, ml, values, g.actor)
    except SlugTaken as exc:
        session.rollback()
        abort(409, errors=exc.errors)
    except ListInputError as exc:
        session.rollback()
        abort(422, errors=exc.errors)
    session.commit()
    assert ml is not None
    return ml


_BODY = {"requestBody": {"required": True,
                         "content": {"application/json": {"schema": ListIn}}}}


@blp.route("/lists", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}], **_BODY)
@require_role(Role.admin)
@blp.response(201, ListOut)
def post_list() -> Any:
    """Create a list: `{"slug", "name": {"en", "es"}, "description", "public", "welcome"}`.

    `name` and `description` are text (English) or `{"en": …, "es": …}`; `welcome` is
    `{"en": {"subject", "body"}, "es": {…}}` (Markdown templates; `null` for a language
    removes it). 409 when the slug is taken, 422 naming each bad field."""
    ml = _write(None)
    return list_out(ml, list_counts(db.session()).get(ml.id))


@blp.route("/lists/<int:list_id>", methods=["PATCH"])
@blp.doc(security=[{"bearerAuth": []}], **_BODY)
@require_role(Role.admin)
@blp.response(200, ListOut)
def patch_list(list_id: int) -> Any:
    """Edit a list: any of the fields of `POST` (the slug cannot change)."""
    ml = _write(found(db.session().get(MailingList, list_id), "No such list."))
    return list_out(ml, list_counts(db.session()).get(ml.id))


@blp.route("/lists/<int:list_id>", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.response(200, ListOut)
def get_list(list_id: int) -> Any:
    """One list with its counts and welcome mail."""
    ml = found(db.session().get(MailingList, list_id), "No such list.")
    return list_out(ml, list_counts(db.session()).get(ml.id))
