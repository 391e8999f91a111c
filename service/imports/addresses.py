"""Address normalisation at import speed, with exactly the result of `normalise_email`.

`email_validator.validate_email` costs about 100 µs per address, i.e. 100 s for a
million-row file. Nearly all of that is the domain (IDNA and the special-use checks), and
an import has few distinct domains. So an address whose local part is plain ASCII
dot-atom (the very regular expression email-validator itself checks first) takes a fast
path: the domain is validated once by `validate_email` and cached, and the three length
checks email-validator makes are repeated here. Anything else — non-ASCII or quoted
local parts, RFC 2142 role names (which email-validator lower-cases), display names,
errors — goes through `normalise_email` itself, so messages and edge cases stay its own.
`tests/imports/test_addresses.py` compares both on a corpus of awkward addresses.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)

from ..subscribers import MAX_EMAIL_LENGTH, normalise_email

_ROLE_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=50_000)
def _domain(domain: str) -> tuple[str, str] | None:
    """(normalised domain, its IDNA ASCII form), or None when the slow path must decide."""
    try:
        result = validate_email("x@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return str(result.domain), str(result.ascii_domain)


def _fits(address: str) -> bool:
    return len(address.encode()) <= EMAIL_MAX_LENGTH


def fast_normalise_email(raw: str) -> str:
    """Same contract as `normalise_email`: the normalised address, or raise InvalidEmail."""
    candidate = raw.strip() if isinstance(raw, str) else raw
    if not candidate or len(candidate) > MAX_EMAIL_LENGTH:
        return normalise_email(raw)
    local, at, domain = candidate.rpartition("@")
    if not at or not DOT_ATOM_TEXT.match(local) or local.lower() in _ROLE_NAMES:
        return normalise_email(raw)
    info = _domain(domain)
    if info is None:
        return normalise_email(raw)
    normalised = f"{local}@{info[0]}"
    if info[0] == info[1] and candidate.isascii():
        return normalised  # all three forms are ASCII and as long as `candidate`: they fit
    if not (_fits(candidate) and _fits(normalised) and _fits(f"{local}@{info[1]}")):
        return normalise_email(raw)
    return normalised
