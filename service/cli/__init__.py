"""Command line: `flask --app service …` or the installed `actionlist …` (see `service.main`)."""

from __future__ import annotations

from flask import Flask

from sendgrid_sink.cli import sink_command

from .campaigns import campaigns
from .imports import export_command, import_command
from .staff import bootstrap, tokens, users


def register(app: Flask) -> None:
    for command in (users, tokens, bootstrap, campaigns, sink_command, import_command,
                    export_command):
        app.cli.add_command(command)
