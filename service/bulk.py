"""Long lists of values as ONE query parameter on PostgreSQL.

psycopg dumps a Python list parameter element by element (~5 µs each) and re-parses a
statement with thousands of placeholders every time; a joined string split by the server
(`string_to_array`) costs ~0.5 µs per element. The importer sends whole columns this way,
the campaign engine its batch's 1000 ids and address hashes.

The separator is the ASCII unit separator, which no value can hold: addresses and cleaned
fields refuse control characters, attributes travel as JSON (which escapes them).
`pg_column()` checks it anyway. Every column carries one extra, empty element (so a
single "" never becomes an empty array); callers drop it (`WITH ORDINALITY … WHERE n <=
:count`), and `one_of` does not care (no value is "").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, any_, func, literal
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from .db import is_pg

SEP = "\x1f"


def pg_column(values: list[str]) -> str:
    """One column for `string_to_array(…, SEP)`, with the extra empty element."""
    joined = SEP.join(values) + SEP
    if joined.count(SEP) != len(values):
        raise ValueError("a value holds the unit separator")
    return joined


def pg_ids(values: Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in values)


def one_of(session: Session, column: Any, values: list[Any], *, ids: bool = False) -> Any:
    """`column IN (values)`; on PostgreSQL `= ANY(one split string)`."""
    if not is_pg(session):
        return column.in_(values)
    if ids:
        return column == any_(
            sql_cast(func.string_to_array(literal(pg_ids(values)), literal(",")), ARRAY(BigInteger))
        )
    return column == any_(func.string_to_array(literal(pg_column(values)), literal(SEP)))
