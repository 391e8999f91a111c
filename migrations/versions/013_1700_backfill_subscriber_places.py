"""Subscribers that have a postal code get the county and time zone of it (and its state,
where the ZIP dataset knows one), from the ZIP dataset of `service.postal`.

Data only, in chunks of 2,000 subscribers by id, each chunk one UPDATE per changed row
(executemany): the table is never held by one long statement, and the same code runs on
SQLite and PostgreSQL. A postal code the dataset does not know leaves the row's state as
it was (an import may have brought one) and its county and time zone blank.
Downgrade keeps the values (the columns themselves belong to revision 1100).

Revision ID: 1700
Revises: 1300
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.postal import place_for

revision: str = "1700"
down_revision: str | None = "1300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 2000

subscribers = sa.table(
    "subscribers",
    sa.column("id", sa.BigInteger),
    sa.column("postal_code", sa.String),
    sa.column("state", sa.String),
    sa.column("county", sa.String),
    sa.column("timezone", sa.String),
)


def upgrade() -> None:
    connection = op.get_bind()
    s = subscribers.c
    update = (
        sa.update(subscribers)
        .where(s.id == sa.bindparam("b_id"))
        .values(state=sa.bindparam("b_state"), county=sa.bindparam("b_county"),
                timezone=sa.bindparam("b_timezone"))
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(s.id, s.postal_code, s.state, s.county, s.timezone)
            .where(s.id > last, s.postal_code != "")
            .order_by(s.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        changes = []
        for sid, postal, state, county, zone in rows:
            place = place_for(postal)
            wanted = (place.state or state, place.county, place.timezone)
            if wanted != (state, county, zone):
                changes.append({"b_id": sid, "b_state": wanted[0], "b_county": wanted[1],
                                "b_timezone": wanted[2]})
        if changes:
            connection.execute(update, changes)
        last = rows[-1][0]


def downgrade() -> None:
    pass
