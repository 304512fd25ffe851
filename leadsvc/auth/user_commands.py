"""`leadsvc users ...`: staff accounts for the console (create, list, disable, reset-password,
reset-2fa)."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from leadsvc.auth.audit import COMMAND_LINE
from leadsvc.auth.keys import ROLES
from leadsvc.auth.second_factor import reset_second_factor
from leadsvc.auth.users import UserError, create_user, disable_user, list_users, reset_password
from leadsvc.extensions import db


def read_password() -> str:
    """The password from standard input when it is not a terminal, else asked for twice."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("users")
def users_group() -> None:
    """Staff accounts that sign in to the console at /console/."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--dealer", "dealer_code", help="The dealer's code (dealer accounts only).")
@with_appcontext
def create_command(email: str, role: str, dealer_code: str | None) -> None:
    """Create an account; the password comes from stdin, or is asked for twice."""
    password = read_password()
    with db.sessionmaker()() as session:
        try:
            user = create_user(session, COMMAND_LINE, email, password, role, dealer_code)
        except UserError as error:
            raise click.UsageError(str(error)) from None
        click.echo(f"created {user.role} account {user.email}")


@users_group.command("list")
@with_appcontext
def list_command() -> None:
    """List accounts: email, role, dealer, state, last sign-in."""
    with db.sessionmaker()() as session:
        users = list_users(session)
        for user, dealer_code in users:
            state = f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "active"
            seen = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
            click.echo(
                f"{user.email:<40} {user.role:<10} {dealer_code or '-':<10} {state:<20} {seen}"
            )
        click.echo(f"{len(users)} accounts")


@users_group.command("disable")
@click.argument("email")
@with_appcontext
def disable_command(email: str) -> None:
    """Disable an account; its open sessions end at once."""
    with db.sessionmaker()() as session:
        try:
            user = disable_user(session, COMMAND_LINE, email)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"{user.email} disabled")


@users_group.command("reset-password")
@click.argument("email")
@with_appcontext
def reset_password_command(email: str) -> None:
    """Set a new password (stdin, or asked for twice); open sessions end."""
    password = read_password()
    with db.sessionmaker()() as session:
        try:
            user = reset_password(session, COMMAND_LINE, email, password)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"password of {user.email} changed")


@users_group.command("reset-2fa")
@click.argument("email")
@with_appcontext
def reset_second_factor_command(email: str) -> None:
    """Remove the account's second factor (a lost phone); open sessions end."""
    with db.sessionmaker()() as session:
        try:
            user = reset_second_factor(session, COMMAND_LINE, email)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"second factor of {user.email} removed; it can set up a new one")


COMMANDS = (users_group,)
