"""`leadsvc dealers ...` and `leadsvc routes ...`: the dealer directory from the command line."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from leadsvc.dealers import directory
from leadsvc.dealers.route_builder import rebuild_routes
from leadsvc.extensions import db


@contextmanager
def _progress(label: str, total: int):
    """A progress bar on a terminal; silent when the output is a file or a pipe."""
    if sys.stdout.isatty() and total:
        with click.progressbar(length=total, label=label, file=sys.stdout) as bar:
            yield bar.update
    else:
        yield None


def _read(path: Path) -> str:
    try:
        return directory.decode_csv(path.read_bytes())
    except directory.ImportFileError as error:
        raise click.ClickException(f"{path}: {error}") from None


def _print_report(report: directory.ImportReport, what: str) -> None:
    for row in report.rows:
        reason = f": {row.reason}" if row.reason else ""
        click.echo(f"line {row.line}: {row.key} {row.action}{reason}")
    counts = ", ".join(
        f"{report.count(action)} {action}"
        for action in ("created", "updated", "unchanged", "assigned", "rejected")
        if report.count(action)
    )
    if not report.applied:
        click.echo(
            f"no {what} changed ({counts}); fix the rejected rows, or use --partial to apply "
            "the valid ones",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{what} imported: {counts or 'nothing to do'}")
    if report.routes:
        click.echo(
            f"routing table version {report.routes.version}: {report.routes.routed_zips} ZIPs "
            f"routed to {report.routes.dealers} active dealers in {report.routes.build_ms} ms"
        )


def _run_import(path: Path, partial: bool, action, what: str, **options) -> None:
    text = _read(path)
    total = max(len(text.splitlines()) - 1, 0)
    with db.sessionmaker()() as session, _progress(f"checking {path.name}", total) as progress:
        try:
            report = action(session, text, partial=partial, progress=progress, **options)
        except directory.ImportFileError as error:
            raise click.ClickException(f"{path}: {error}") from None
    _print_report(report, what)


@click.group("dealers")
def dealers_group() -> None:
    """The dealer directory."""


@dealers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Apply the valid rows even if some are rejected.")
@with_appcontext
def import_command(csv_file: Path, partial: bool) -> None:
    """Upsert dealers by code from CSV_FILE.

    Header: code,name,street,city,state,zip,phone,lead_email,webhook_url,webhook_secret,
    latitude,longitude (the last four may be empty). Lines starting with # are comments.
    """
    networks = current_app.config["LEADSVC_SETTINGS"].webhook_allowed_networks
    _run_import(csv_file, partial, directory.import_dealers, "dealers", webhook_networks=networks)


@dealers_group.command("assign")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Apply the valid rows even if some are rejected.")
@with_appcontext
def assign_command(csv_file: Path, partial: bool) -> None:
    """Assign ZIPs to dealers (territory overrides) from CSV_FILE with header zip,dealer_code."""
    _run_import(csv_file, partial, directory.assign_territories, "territories")


@dealers_group.command("list")
@with_appcontext
def list_command() -> None:
    """List the dealers."""
    with db.sessionmaker()() as session:
        dealers = directory.list_dealers(session)
        for d in dealers:
            state = "active" if d.active else "inactive"
            click.echo(f"{d.code:<10} {state:<8} {d.zip5} {d.city}, {d.state}  {d.name}")
        click.echo(f"{len(dealers)} dealers")


@dealers_group.command("deactivate")
@click.argument("code")
@with_appcontext
def deactivate_command(code: str) -> None:
    """Deactivate dealer CODE; its unacknowledged leads move to the next nearest dealer."""
    with db.sessionmaker()() as session:
        try:
            report = directory.deactivate_dealer(session, code)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    click.echo(
        f"{report.code} deactivated; {report.moved_leads} unacknowledged leads re-routed "
        f"(routing table version {report.routes.version})"
    )


@click.group("routes")
def routes_group() -> None:
    """The ZIP routing table."""


@routes_group.command("rebuild")
@with_appcontext
def rebuild_command() -> None:
    """Rebuild the routing table from the active dealers and territories."""
    with db.sessionmaker()() as session:
        report = rebuild_routes(session)
        session.commit()
    click.echo(
        f"routing table version {report.version}: {report.routed_zips} ZIPs routed to "
        f"{report.dealers} active dealers ({report.territory_zips} by territory) "
        f"in {report.build_ms} ms"
    )


@routes_group.command("unassigned")
@with_appcontext
def unassigned_command() -> None:
    """Count the leads in the unassigned pool, by ZIP."""
    from leadsvc.leads.models import Lead

    with db.sessionmaker()() as session:
        rows = session.execute(
            sa.select(Lead.zip5, sa.func.count())
            .where(Lead.dealer_id.is_(None))
            .group_by(Lead.zip5)
            .order_by(Lead.zip5)
        ).all()
    for zip5, count in rows:
        click.echo(f"{zip5} {count}")
    click.echo(f"{sum(count for _, count in rows)} unassigned leads")


COMMANDS = (dealers_group, routes_group)
