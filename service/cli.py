"""Command line: `flask --app service …` or the installed `actionlist …`."""

from __future__ import annotations

import secrets
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import select

from . import db
from .models import Role, User

ROLE_CHOICE = click.Choice([r.value for r in Role])


@click.group("users", help="Staff users.")
def users() -> None:
    pass


@users.command("create")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, password_stdin: bool) -> None:
    from .auth import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    session = db.session()
    if session.scalars(select(User).where(User.email == email.strip().lower())).first():
        raise click.ClickException(f"A user {email} already exists.")
    try:
        create_user(session, email, password, Role(role))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"Created {role} {email}.")


@click.group("tokens", help="API tokens.")
def tokens() -> None:
    pass


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True)
def tokens_create(name: str, role: str) -> None:
    from .auth import create_api_token

    session = db.session()
    _row, secret = create_api_token(session, name, Role(role))
    session.commit()
    click.echo(secret)


@click.command("bootstrap", help="Make sure an admin user exists (prints its login once).")
def bootstrap() -> None:
    from .auth import create_user

    session = db.session()
    if session.scalars(select(User).limit(1)).first() is not None:
        click.echo("Admin user exists already.")
        return
    password = secrets.token_urlsafe(12)
    create_user(session, "admin@example.org", password, Role.admin)
    session.commit()
    click.echo("Created the first admin user — this is shown only once:")
    click.echo("  email:    admin@example.org")
    click.echo(f"  password: {password}")


def register(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(tokens)
    app.cli.add_command(bootstrap)
    from sendgrid_sink.cli import sink_command

    from .campaigns.cli import campaigns

    app.cli.add_command(campaigns)
    app.cli.add_command(sink_command)
    from .imports.cli import export_command, import_command

    app.cli.add_command(import_command)
    app.cli.add_command(export_command)


def _create_app() -> Flask:
    from . import create_app

    return create_app()


main = FlaskGroup(create_app=_create_app, help="actionlist: mailing service for advocacy.")
