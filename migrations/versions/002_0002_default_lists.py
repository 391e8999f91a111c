"""Create the two lists every deployment has: action-alerts and newsletter.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTS = [
    {
        "slug": "action-alerts",
        "name_en": "Action alerts",
        "name_es": "Alertas de acción",
        "description_en": "Urgent calls to act, often for your state.",
        "description_es": "Llamados urgentes a la acción, a menudo para tu estado.",
    },
    {
        "slug": "newsletter",
        "name_en": "Monthly newsletter",
        "name_es": "Boletín mensual",
        "description_en": "News and victories, once a month.",
        "description_es": "Noticias y logros, una vez al mes.",
    },
]


def upgrade() -> None:
    lists = sa.table(
        "mailing_lists",
        sa.column("slug", sa.String),
        sa.column("name_en", sa.String),
        sa.column("name_es", sa.String),
        sa.column("description_en", sa.Text),
        sa.column("description_es", sa.Text),
        sa.column("public", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    conn = op.get_bind()
    existing = {row[0] for row in conn.execute(sa.text("SELECT slug FROM mailing_lists"))}
    now = datetime.now(UTC)
    rows = [
        {**item, "public": True, "created_at": now}
        for item in LISTS
        if item["slug"] not in existing
    ]
    if rows:
        op.bulk_insert(lists, rows)


def downgrade() -> None:
    op.execute(
        "DELETE FROM mailing_lists WHERE slug IN ('action-alerts', 'newsletter') "
        "AND id NOT IN (SELECT list_id FROM subscriptions)"
    )
