"""Offset pages of the staff API's lists: `page` and `per_page` in, `has_more` out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select

from .. import db


def offset_page(
    query: Select[Any], newest_first: Any, args: dict[str, Any], item: Callable[[Any], Any]
) -> dict[str, Any]:
    """One page of `query` ordered by `newest_first` descending, each row shown by `item`."""
    page, per_page = args["page"], args["per_page"]
    rows = list(
        db.session().scalars(
            query.order_by(newest_first.desc()).offset((page - 1) * per_page).limit(per_page + 1)
        )
    )
    return {
        "items": [item(row) for row in rows[:per_page]],
        "page": page,
        "per_page": per_page,
        "has_more": len(rows) > per_page,
    }
