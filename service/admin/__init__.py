"""The staff admin under /admin: server-rendered pages behind a login and roles.

Every route of this blueprint needs a logged-in staff user (`_require_login` runs before
each view, so a new route cannot forget it); views name the role they need with
`@staff_required(Role.x)`, which refuses a POST with 403 as well as hiding its button.
"""

from __future__ import annotations

# Views register themselves on `bp` when imported.
from . import (  # noqa: F401
    access,
    campaigns,
    dashboard,
    imports,
    lists,
    outgoing,
    records,
    segment_form,
    staff,
    subscribers,
    twofactor,
)
from .blueprint import bp

__all__ = ["bp"]
