"""`leadsvc worker`, `leadsvc relay`, `leadsvc outbox ...`: outbound jobs from the command line."""

from __future__ import annotations

import gc
import logging
import time

import click
import redis
from flask import Flask, current_app
from flask.cli import with_appcontext
from rq.serializers import JSONSerializer
from sqlalchemy.exc import SQLAlchemyError

from leadsvc.extensions import db
from leadsvc.jobs.maintenance import maintenance_queue
from leadsvc.jobs.queue import outbound_queues, redis_client
from leadsvc.jobs.worker import AppWorker
from leadsvc.ops.dependencies import next_backoff, setting_of, unreachable, wait_for_services
from leadsvc.ops.logs import describe_error
from leadsvc.outbox import messages as outbox

log = logging.getLogger(__name__)


def _redis_url(app: Flask) -> str:
    url = app.config["LEADSVC_SETTINGS"].redis_url
    if not url:
        raise click.ClickException(
            "REDIS_URL is not set: without Redis the web process (leadsvc serve) delivers the "
            "outbox itself"
        )
    return url


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run the jobs queued now, then exit.")
@with_appcontext
def worker_command(burst: bool) -> None:
    """Run an rq worker (with its scheduler, which retries need) for the outbound jobs."""
    app = current_app._get_current_object()
    settings = app.config["LEADSVC_SETTINGS"]
    connection = redis_client(_redis_url(app))
    queues = [*outbound_queues(connection, settings.job_timeout), maintenance_queue(connection)]
    # What the app loaded stays for the life of the worker: the cyclic collector need not scan
    # it again (a full collection of it stalled the worker ~75 ms).
    gc.freeze()
    try:
        _work(app, queues, connection, burst)
    except KeyboardInterrupt:
        pass


def _work(app: Flask, queues, connection, burst: bool) -> None:
    """Run the worker once the database and Redis answer; if Redis goes away under rq, say so
    and start again after a growing pause."""
    settings = app.config["LEADSVC_SETTINGS"]
    backoff = 0.0
    while wait_for_services(app, log, "worker"):
        worker = AppWorker(queues, connection=connection, serializer=JSONSerializer, app=app)
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
            return
        except redis.exceptions.ConnectionError as error:
            backoff = next_backoff(backoff)
            line = unreachable("REDIS_URL", describe_error(error))
            log.warning("worker: %s; trying again in %.1f s", line, backoff)
            time.sleep(backoff)


@click.command("relay")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option(
    "--interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds between passes.",
)
@with_appcontext
def relay_command(once: bool, interval: float) -> None:
    """Hand outbox rows to rq as they are written, replace jobs Redis lost, settle tries whose
    worker died, and seal new consent events."""
    from leadsvc.jobs.relay import relay_once, run_relay

    app = current_app._get_current_object()
    connection = redis_client(_redis_url(app))
    if once:
        try:
            report = relay_once(app, connection)
        except (redis.exceptions.RedisError, SQLAlchemyError) as error:
            line = unreachable(setting_of(error), describe_error(error))
            raise click.ClickException(f"relay: {line}") from None
        click.echo(
            f"{report.reclaimed} tries reclaimed, {report.enqueued} jobs enqueued, "
            f"{report.swept} lost jobs replaced, {report.given_up} rows given up"
        )
        return
    click.echo(f"leadsvc relay: every {interval:g} s (Ctrl-C stops)")
    try:
        run_relay(app, connection, interval)
    except KeyboardInterrupt:
        pass


@click.group("outbox")
def outbox_group() -> None:
    """The outbox of emails and dealer notifications."""


def _age(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


@outbox_group.command("status")
@with_appcontext
def status_command() -> None:
    """Counts by kind and status, and the age of the oldest row not yet sent or settled."""
    with db.sessionmaker()() as session:
        report = outbox.outbox_status(session)
    header = ["kind", *outbox.STATUSES]
    click.echo(f"{header[0]:<16}" + "".join(f"{name:>12}" for name in header[1:]))
    for kind in outbox.KINDS:
        counts = [report.counts.get((kind, status), 0) for status in outbox.STATUSES]
        click.echo(f"{kind:<16}" + "".join(f"{count:>12}" for count in counts))
    if report.oldest_open_seconds is None:
        click.echo("nothing pending")
    else:
        click.echo(
            f"oldest pending: row {report.oldest_open_id}, waiting "
            f"{_age(report.oldest_open_seconds)}"
        )


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1))
@click.option("--failed", "all_failed", is_flag=True, help="Every failed row.")
@with_appcontext
def retry_command(ids: tuple[int, ...], all_failed: bool) -> None:
    """Send rows again (after a fix): by ID, or every failed row with --failed.

    A row in status unknown may already have arrived; retry it only by its ID, knowingly.
    """
    if bool(ids) == all_failed:
        raise click.UsageError("give row IDs or --failed (not both)")
    with db.sessionmaker()() as session:
        targets = outbox.failed_ids(session) if all_failed else list(ids)
        retried = []
        for outbox_id in targets:
            try:
                row = outbox.retry_message(session, outbox_id)
            except (LookupError, outbox.NotRetryable) as error:
                session.rollback()
                click.echo(f"row {outbox_id}: {error}", err=True)
                continue
            retried.append(row.id)
            session.commit()
    listed = f": {', '.join(map(str, retried))}" if retried else ""
    click.echo(f"{len(retried)} rows queued again{listed}")
    if len(retried) < len(targets):
        raise SystemExit(1)


COMMANDS = (worker_command, relay_command, outbox_group)
