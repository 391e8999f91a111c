"""GET /api/v1/lists."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import func, select

from .. import db
from ..auth import require_role
from ..models import MailingList, Role, Subscription
from .schemas import ListOut

blp = Blueprint("lists_api", __name__, url_prefix="/api/v1", description="Mailing lists")


def list_counts() -> dict[int, dict[str, int]]:
    rows = db.session().execute(
        select(Subscription.list_id, Subscription.status, func.count()).group_by(
            Subscription.list_id, Subscription.status
        )
    )
    counts: dict[int, dict[str, int]] = {}
    for list_id, status, n in rows:
        counts.setdefault(list_id, {"pending": 0, "confirmed": 0, "unsubscribed": 0})[
            str(status)
        ] = n
    return counts


@blp.route("/lists", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.response(200, ListOut(many=True))
def get_lists() -> Any:
    """All lists with their subscriber counts."""
    counts = list_counts()
    empty = {"pending": 0, "confirmed": 0, "unsubscribed": 0}
    return [
        {
            "id": ml.id,
            "slug": ml.slug,
            "name": ml.name_en,
            "name_es": ml.name_es,
            "public": ml.public,
            "subscriber_counts": counts.get(ml.id, empty),
        }
        for ml in db.session().scalars(select(MailingList).order_by(MailingList.id))
    ]
