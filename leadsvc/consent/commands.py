"""`leadsvc consent ...`, `leadsvc export consent` and `leadsvc purge`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from leadsvc.consent import chain, retention
from leadsvc.consent.export import FORMATS, ExportCounter, stream_export
from leadsvc.consent.service import list_texts, parse_when, publish_text
from leadsvc.consent.verifications import run_verification
from leadsvc.extensions import db


@click.group("consent")
def consent_group() -> None:
    """Consent texts and the tamper-evident consent log."""


@consent_group.command("texts")
@with_appcontext
def texts_command() -> None:
    """List the consent text versions (the active one is marked *)."""
    with db.sessionmaker()() as session:
        for text in list_texts(session):
            mark = "*" if text.active else " "
            first_line = text.text.splitlines()[0][:70]
            click.echo(
                f"{mark} v{text.version}  {text.published_at:%Y-%m-%d}  "
                f"sha256:{text.sha256[:12]}  {first_line}"
            )


@consent_group.command("publish")
@click.argument("text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def publish_command(text_file: Path) -> None:
    """Publish TEXT_FILE (UTF-8) as a new consent text version and make it active."""
    try:
        text = text_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(f"{text_file} is not UTF-8") from None
    with db.sessionmaker()() as session:
        try:
            published = publish_text(session, text)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        click.echo(
            f"published v{published.version} (sha256:{published.sha256}); "
            "the form shows it from now on"
        )


@consent_group.command("seal")
@with_appcontext
def seal_command() -> None:
    """Seal the consent events not yet sealed (the relay does this continuously)."""
    with db.sessionmaker()() as session:
        report = chain.seal_pending(session)
    click.echo(f"{report.events} events sealed in {report.seals} seals")


@consent_group.command("verify")
@with_appcontext
def verify_command() -> None:
    """Recompute the hash chain; report the first event or seal that does not match."""
    with db.sessionmaker()() as session:
        report = run_verification(session, "cli")
    if not report.ok:
        click.echo(f"FAILED: {report.problem}", err=True)
        raise SystemExit(1)
    click.echo(
        f"OK: {report.seals} seals, {report.events} events verified; "
        f"{report.unsealed} events not sealed yet"
    )


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None


@click.group("export")
def export_group() -> None:
    """Exports for compliance staff."""


@export_group.command("consent")
@click.option("--from", "start", help="Events at or after this ISO date/time (default: all).")
@click.option("--to", "end", help="Events before this ISO date/time (default: now).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write ('-' for standard output).",
)
@with_appcontext
def export_consent_command(start, end, fmt, output) -> None:
    """Stream every consent event in the range to OUTPUT (audited)."""
    begin = _when(start) or datetime(1970, 1, 1, tzinfo=UTC)
    finish = _when(end) or datetime.now(UTC)
    counter = ExportCounter(fmt)
    actor = f"cli:{current_app.config.get('CLI_USER') or 'operator'}"
    chunks = stream_export(db.engine(), fmt, begin, finish, actor, counter)
    handle = sys.stdout.buffer if str(output) == "-" else output.open("wb")
    show = handle is not sys.stdout.buffer and sys.stderr.isatty()
    try:
        for chunk in chunks:
            handle.write(chunk)
            if show:
                click.echo(f"\r{counter.rows():,} rows", nl=False, err=True)
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    prefix = "\r" if show else ""
    click.echo(f"{prefix}{counter.rows():,} consent events exported", err=True)


@click.command("purge")
@click.option(
    "--older-than",
    "days",
    type=int,
    default=None,
    help="Days since a lead last changed (default: the RETENTION_DAYS setting).",
)
@click.option("--apply", is_flag=True, help="Delete (without it, only count: a dry run).")
@with_appcontext
def purge_command(days: int | None, apply: bool) -> None:
    """Remove leads and their outbox rows past retention; consent events and seals stay."""
    days = days or current_app.config["LEADSVC_SETTINGS"].retention_days
    with db.sessionmaker()() as session:
        try:
            report = retention.purge(session, days, apply=apply)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
    verb = "removed" if report.applied else "would remove (dry run; add --apply)"
    click.echo(
        f"{verb}: {report.leads} leads and {report.outbox_rows} outbox rows "
        f"not changed since {report.cutoff}"
    )


COMMANDS = (consent_group, export_group, purge_command)
