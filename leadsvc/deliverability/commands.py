"""`leadsvc bounces ingest|poll`: bounces and complaints from files, a pipe, or an IMAP mailbox."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from leadsvc.extensions import db


@click.group("bounces")
def bounces_group() -> None:
    """Bounces and complaints: read them from files, standard input or an IMAP mailbox."""


@bounces_group.command("ingest")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def ingest_command(files: tuple[str, ...]) -> None:
    """Read RFC 5322 messages or mbox files (standard input without FILE), e.g. from an MTA's
    pipe, and record the bounces and complaints among them."""
    from leadsvc.deliverability.ingest import ingest_batch, messages_of

    settings = current_app.config["LEADSVC_SETTINGS"]
    datas = (open(path, "rb").read() for path in files) if files else [sys.stdin.buffer.read()]
    with db.sessionmaker(current_app)() as session:
        report = ingest_batch(session, settings, messages_of(datas))
    click.echo(report.summary())


@bounces_group.command("poll")
@click.option("--every", type=click.IntRange(min=0), default=None, help="Poll again every N s.")
@with_appcontext
def poll_command(every: int | None) -> None:
    """Read the BOUNCE_IMAP_URL mailbox once (or every N seconds), move what was understood."""
    import imaplib

    from leadsvc.deliverability.imap import poll_mailbox

    settings = current_app.config["LEADSVC_SETTINGS"]
    if not settings.bounce_imap_url:
        raise click.ClickException("BOUNCE_IMAP_URL is not set")
    while True:
        try:
            with db.sessionmaker(current_app)() as session:
                click.echo(poll_mailbox(session, settings).summary())
        except (imaplib.IMAP4.error, OSError) as error:
            problem = f"the bounce mailbox: {type(error).__name__}: {error}"
            if not every:
                raise click.ClickException(problem) from None
            click.echo(problem, err=True)
        if not every:
            return
        time.sleep(every)


COMMANDS = (bounces_group,)
