"""Staff users, API tokens and the first admin: `actionlist users|tokens|bootstrap`."""

from __future__ import annotations

import secrets
import sys

import click
from sqlalchemy import select

from .. import db, twofactor
from ..audit import record
from ..auth import create_api_token, create_user, end_sessions
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


@users.command("2fa")
@click.argument("email")
def users_2fa(email: str) -> None:
    """Turn on two-factor authentication for EMAIL (or replace a lost phone's secret).

    Prints the otpauth:// URI to load into an authenticator app, and the recovery codes:
    both are shown this once, never again.
    """
    session = db.session()
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise click.ClickException(f"No user {email}.")
    had_it = twofactor.enabled(user)
    uri, codes = twofactor.enable_now(session, user)
    end_sessions(user)  # whoever held the old second factor is signed out
    record(session, actor="cli", action="user.2fa_enable", object_type="user",
           object_id=user.id, detail={"replaced": had_it})
    session.commit()
    click.echo(uri)
    click.echo(f"Two-factor authentication is {'reset' if had_it else 'on'} for {user.email}: "
               "load the URI above into an authenticator app (shown only now).", err=True)
    click.echo("Recovery codes (each works once, shown only now):", err=True)
    for code in codes:
        click.echo(f"  {code}", err=True)


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
