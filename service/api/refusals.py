"""How the staff API answers a domain refusal: roll the request's work back and answer
with the refusal's own message, under a field (`{"errors": {field: [message]}}`) or as
the message of the error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask_smorest import abort

from .. import db


@contextmanager
def refused_as(
    error: type[Exception], status: int, field: str | None = None
) -> Iterator[None]:
    """Inside the block, `error` rolls back and answers `status` with its message."""
    try:
        yield
    except error as exc:
        db.session().rollback()
        if field is None:
            abort(status, message=str(exc))
        abort(status, errors={field: [str(exc)]})
