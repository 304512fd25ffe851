"""`leadsvc keys ...`: create, list and revoke API keys."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from leadsvc.auth.keys import ROLES, create_key, list_keys, revoke_key
from leadsvc.auth.user_commands import users_group
from leadsvc.extensions import db


@click.group("keys")
def keys_group() -> None:
    """API keys for dealers' lead systems, compliance staff and admins."""


@keys_group.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--dealer", "dealer_code", help="The dealer's code (dealer keys only).")
@click.option("--name", help="What the key is for, e.g. the CRM's name.")
@with_appcontext
def create_command(role: str, dealer_code: str | None, name: str | None) -> None:
    """Create a key and print it once (only its hash is kept)."""
    with db.sessionmaker()() as session:
        try:
            row, key = create_key(session, role, dealer_code, name)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        click.echo(key)
        click.echo(
            f"created {row.role} key {row.prefix}; store it now, it is not shown again", err=True
        )


@keys_group.command("list")
@with_appcontext
def list_command() -> None:
    """List keys by prefix (never the keys themselves)."""
    with db.sessionmaker()() as session:
        keys = list_keys(session)
        for key, dealer_code in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
            click.echo(
                f"{key.prefix}  {key.role:<10} {dealer_code or '-':<10} {state:<18} "
                f"{used:<16}  {key.name or ''}"
            )
        click.echo(f"{len(keys)} keys")


@keys_group.command("revoke")
@click.argument("prefix")
@with_appcontext
def revoke_command(prefix: str) -> None:
    """Revoke the key with PREFIX (e.g. lsk_AbCd1234)."""
    with db.sessionmaker()() as session:
        try:
            key = revoke_key(session, prefix)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"{key.prefix} revoked")


COMMANDS = (keys_group, users_group)
