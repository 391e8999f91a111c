"""The dashboard: list sizes, signups over 90 days, recent campaigns."""

from __future__ import annotations

from typing import Any

from flask import render_template

from .. import db
from ..lists import all_lists, list_counts
from ..models import Role
from . import queries
from .access import staff_required
from .blueprint import bp
from .charts import bar_chart


@bp.get("/")
@staff_required(Role.viewer)
def dashboard() -> Any:
    session = db.session()
    series = queries.signups_per_day(session, days=90)
    return render_template(
        "admin/dashboard.html",
        lists=all_lists(session),
        counts=list_counts(session),
        series=series,
        chart=bar_chart(series.days, series.counts),
        campaigns=queries.recent_campaigns(session),
    )
