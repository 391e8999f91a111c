"""Staff users, API tokens and the first admin: `actionlist users|tokens|bootstrap`."""

from __future__ import annotations

import secrets
import sys

import click
from sqlalchemy import select

from .. import db
from ..auth import create_api_token, create_user
from ..models import Role, User

ROLE_CHOICE = click.Choice([r.value for r in Role])
# The role a new staff user or API token gets.
role_option = click.option("--role", type=ROLE_CHOICE, required=True)


@click.group("users", help="Staff users.")
def users() -> None:
    pass


@users.command("create")
@click.argument("email")
@role_option
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, password_stdin: bool) -> None:
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
@role_option
def tokens_create(name: str, role: str) -> None:
    session = db.session()
    _row, secret = create_api_token(session, name, Role(role))
    session.commit()
    click.echo(secret)


@click.command("bootstrap", help="Make sure an admin user exists (prints its login once).")
def bootstrap() -> None:
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
