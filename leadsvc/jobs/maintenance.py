"""The consent ledger's verification as a job, started from the console, never run inside a
request.

With REDIS_URL it is an rq job on the `maintenance` queue, which `leadsvc worker` takes after
the outbound queues; without Redis (the embedded default) a thread of the web process runs it.
Either way the job opens its own session and records the result on the run asked for.
"""

from __future__ import annotations

import logging
import threading

import redis
from flask import current_app
from flask.ctx import AppContext
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy.orm import Session

from leadsvc.consent.chain import subject_key
from leadsvc.consent.models import ConsentVerification
from leadsvc.consent.verifications import LOST_AFTER, run_requested
from leadsvc.extensions import db
from leadsvc.jobs.queue import FAILURE_TTL, redis_client
from leadsvc.ops.logs import describe_error

log = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "maintenance"
JOB_FUNCTION = "leadsvc.jobs.maintenance.verify_ledger"


def maintenance_queue(connection: redis.Redis) -> Queue:
    """The queue of the long jobs (workers take from it after the outbound queues)."""
    timeout = int(LOST_AFTER.total_seconds())
    return Queue(
        MAINTENANCE_QUEUE,
        connection=connection,
        serializer=JSONSerializer,
        default_timeout=timeout,
    )


def verify_ledger(verification_id: int) -> bool | None:
    """The rq job (run in the worker's app context): the verification's result, None if it
    had run already."""
    with db.sessionmaker()() as session:
        report = run_requested(session, verification_id)
    return None if report is None else report.ok


def _run_in_thread(context: AppContext, verification_id: int) -> None:
    # A failure ends the thread (threading's hook logs it) and leaves the run unfinished: after
    # LOST_AFTER it no longer holds back a new one.
    with context, db.sessionmaker(context.app)() as session:
        run_requested(session, verification_id, subject_key(context.app.config["SECRET_KEY"]))


def start_verification(session: Session, run: ConsentVerification) -> bool:
    """Start the job of the run just asked for (in the app's context); False (and the run
    removed) if the job queue cannot be reached."""
    redis_url = current_app.config["LEADSVC_SETTINGS"].redis_url
    if redis_url is None:
        context = current_app.app_context()  # the same app, pushed again on the thread
        name = f"ledger-verification-{run.id}"
        thread = threading.Thread(target=_run_in_thread, args=(context, run.id), name=name)
        thread.daemon = True
        thread.start()
        return True
    connection = redis_client(redis_url)
    try:
        maintenance_queue(connection).enqueue(
            JOB_FUNCTION,
            run.id,
            job_id=f"verify-ledger-{run.id}",
            result_ttl=0,
            failure_ttl=FAILURE_TTL,
            description=f"verify the consent ledger (run {run.id})",
        )
    except redis.exceptions.RedisError as error:
        log.warning("ledger verification not queued (%s)", describe_error(error))
        session.delete(run)
        session.commit()
        return False
    finally:
        connection.close()
    return True
