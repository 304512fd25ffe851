"""The `leadsvc` command: a Flask CLI group around `create_app`."""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup, routes_command, shell_command

from leadsvc.settings import SettingsError


def _create_app():
    from leadsvc.app import create_app

    try:
        return create_app()
    except SettingsError as error:
        click.echo(f"leadsvc: configuration error: {error}", err=True)
        sys.exit(2)


main = FlaskGroup(
    name="leadsvc",
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    help="leadsvc: the service behind the 'Stay In the Loop' newsletter form.",
)
main.add_command(shell_command)
main.add_command(routes_command, "urls")  # `routes` is the ZIP routing table
