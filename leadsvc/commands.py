"""The service's own commands (serve, db, zips); `register_commands` adds every domain's too."""

from __future__ import annotations

import signal

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from leadsvc.ops.dependencies import redis_problem, unreachable
from leadsvc.ops.logs import describe_error

#: Seconds `leadsvc serve` waits on a client's socket (a request line, headers, a body shorter
#: than its Content-Length) before it gives up on the connection.
DEFAULT_READ_TIMEOUT = 30.0


def embedded_server(app, host: str, port: int, read_timeout: float = DEFAULT_READ_TIMEOUT):
    """Werkzeug's threaded server for `leadsvc serve`, each connection's socket given a read
    timeout: a client that stops sending (a body shorter than its Content-Length) holds one
    thread that long, not forever, and then gets 400 and a closed connection. `setup()` is
    socketserver's documented hook that runs before the request is read."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class ReadTimeoutHandler(WSGIRequestHandler):
        def setup(self) -> None:
            self.request.settimeout(read_timeout)
            super().setup()

    return make_server(host, port, app, threaded=True, request_handler=ReadTimeoutHandler)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--read-timeout",
    default=DEFAULT_READ_TIMEOUT,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds to wait for a client's next bytes before closing its connection.",
)
@with_appcontext
def serve_command(host: str, port: int, read_timeout: float) -> None:
    """Migrate the database, load reference data, and serve the form and the API."""
    from leadsvc.jobs import start_in_process_delivery
    from leadsvc.jobs.drainer import stop_drainer
    from leadsvc.release import prepare_database

    app = current_app._get_current_object()
    settings = app.config["LEADSVC_SETTINGS"]
    try:
        report = prepare_database(app)
    except SQLAlchemyError as error:
        click.echo(f"leadsvc serve: {unreachable('DATABASE_URL', describe_error(error))}", err=True)
        raise SystemExit(1) from None
    redis_down = redis_problem(settings.redis_url)
    if redis_down:
        click.echo(
            f"leadsvc serve: {unreachable('REDIS_URL', redis_down)}; signups are taken and "
            "their emails wait until it is back",
            err=True,
        )
    in_process = start_in_process_delivery(app)
    server = embedded_server(app, host, port, read_timeout)
    database = "SQLite (embedded)" if settings.is_sqlite else "PostgreSQL"
    delivery = "emails and dealer notifications sent in-process" if in_process else "jobs on rq"
    click.echo(
        f"leadsvc: {database}, {report.zip_codes} ZIP codes, {report.dealers} dealers"
        f"{' (demo directory loaded)' if report.demo_dealers_loaded else ''}; {delivery}; "
        f"the form is at http://{host}:{server.server_port}/ (Ctrl-C stops)"
    )
    _stop_on_signals()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stop_drainer(app)  # lets a message being sent finish and be recorded


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the server the same way, always: Python leaves SIGINT
    ignored in a process started with it ignored (a background job of a shell script, nohup),
    and SIGTERM would otherwise end the process before the drainer finishes its message."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade_command() -> None:
    """Run the migrations to head and load the ZIP directory if it is empty."""
    from leadsvc.release import prepare_database

    report = prepare_database(current_app._get_current_object())
    click.echo(
        f"database at head; {report.zip_codes} ZIP codes in the directory; {report.dealers} dealers"
    )


@click.group("zips")
def zips_group() -> None:
    """The US ZIP directory."""


@zips_group.command("load")
@click.option(
    "--source",
    type=click.Choice(["offline", "geonames"]),
    default=None,
    help="Which pgeocode source to try first (default: the ZIP_SOURCE setting).",
)
@with_appcontext
def zips_load_command(source: str | None) -> None:
    """Reload the ZIP directory from pgeocode (offline `zipcodes` data or GeoNames)."""
    from leadsvc.extensions import db
    from leadsvc.geo.directory import store_zip_directory
    from leadsvc.geo.source import read_zip_rows

    settings = current_app.config["LEADSVC_SETTINGS"]
    rows = read_zip_rows(settings.zip_data_dir, source or settings.zip_source)
    with db.sessionmaker()() as session:
        count = store_zip_directory(session, rows)
        session.commit()
    click.echo(f"{count} ZIP codes loaded")


def register_commands(app) -> None:
    from leadsvc.auth.commands import COMMANDS as KEY_COMMANDS
    from leadsvc.consent.commands import COMMANDS as CONSENT_COMMANDS
    from leadsvc.dealers.commands import COMMANDS as DEALER_COMMANDS
    from leadsvc.deliverability.commands import COMMANDS as BOUNCE_COMMANDS
    from leadsvc.jobs.commands import COMMANDS as JOB_COMMANDS

    domains = (DEALER_COMMANDS, KEY_COMMANDS, JOB_COMMANDS, CONSENT_COMMANDS, BOUNCE_COMMANDS)
    for command in (serve_command, db_group, zips_group, *(c for d in domains for c in d)):
        app.cli.add_command(command)
