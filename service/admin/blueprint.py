"""The admin blueprint, in a module of its own so the view modules that register routes
on it and the package that imports them form no import cycle."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
