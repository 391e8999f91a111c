"""How the staff API answers a refusal: a row that is not there (404), or a domain
refusal, after which the request's work is rolled back and the answer carries the
refusal's own message, under a field (`{"errors": {field: [message]}}`) or as the
message of the error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask_smorest import abort

from .. import db

R = TypeVar("R")


def found(row: R | None, message: str) -> R:
    """The row the request names, or a 404 answer with `message`."""
    if row is None:
        abort(404, message=message)
    assert row is not None
    return row


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
