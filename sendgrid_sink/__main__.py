"""`python -m sendgrid_sink`: the sink without the application (see `cli`)."""

from .cli import sink_command

sink_command()
