"""The query string of admin pages: values that must be ids are ids, or the page says no."""

from __future__ import annotations

from flask import abort, request

from ..db import parse_id


def id_arg(name: str) -> int | None:
    """The id in `?name=`; None when absent or empty; 422 naming it when not an id."""
    value = request.args.get(name, "")
    if not value:
        return None
    parsed = parse_id(value)
    if parsed is None:
        abort(422, description=f"{name}: not a valid position in the list.")
    return parsed
