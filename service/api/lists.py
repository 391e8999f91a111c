"""GET /api/v1/lists."""

from __future__ import annotations

from typing import Any

from .. import db
from ..auth import require_role
from ..extensions import ApiBlueprint
from ..lists import all_lists, list_counts
from ..models import Role
from .schemas import ListOut

blp = ApiBlueprint("lists_api", __name__, url_prefix="/api/v1", description="Mailing lists")


@blp.route("/lists", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}])
@require_role(Role.viewer)
@blp.response(200, ListOut(many=True))
def get_lists() -> Any:
    """All lists with their subscriber counts."""
    session = db.session()
    counts = list_counts(session)
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
        for ml in all_lists(session)
    ]
