"""The ledger verification from the console runs as a job (rq with Redis, a thread without),
one at a time, never inside the request."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from rq.serializers import JSONSerializer

from leadsvc.consent.models import ConsentVerification
from leadsvc.consent.verifications import (
    LOST_AFTER,
    pending_verification,
    request_verification,
    run_requested,
)
from leadsvc.db import utcnow
from leadsvc.jobs.maintenance import MAINTENANCE_QUEUE, maintenance_queue, verify_ledger
from leadsvc.jobs.worker import AppWorker
from tests.console.conftest import post_form, sign_in, sign_up


def _runs(console_db) -> list[tuple]:
    with console_db() as session:
        rows = session.execute(
            sa.select(
                ConsentVerification.actor, ConsentVerification.ok, ConsentVerification.events
            ).order_by(ConsentVerification.id)
        ).all()
    return [tuple(row) for row in rows]


def test_with_redis_the_verification_is_an_rq_job_the_worker_runs(
    make_app, redis, redis_url, console_db, accounts
):
    app = make_app(redis_url=redis_url)
    client = app.test_client()
    sign_up(client, console_db, "queued@example.com")
    sign_in(client, accounts["compliance"])
    reply = post_form(client, "/console/ledger", {})
    assert reply.status_code == 303
    page = client.get("/console/ledger").text
    assert "The verification has started." in page and "is running" in page
    assert "Verify the ledger now" not in page  # one at a time
    assert _runs(console_db) == [(f"console:{accounts['compliance']}", None, None)]
    queue = maintenance_queue(redis)
    assert queue.name == MAINTENANCE_QUEUE and queue.count == 1

    worker = AppWorker([queue], connection=redis, serializer=JSONSerializer, app=app)
    assert worker.work(burst=True)
    assert _runs(console_db) == [(f"console:{accounts['compliance']}", True, 0)]
    page = client.get("/console/ledger").text
    assert "The ledger is intact" in page and "Verify the ledger now" in page


def test_a_queue_that_cannot_be_reached_leaves_no_run_waiting(make_app, console_db, accounts):
    app = make_app(redis_url="redis://127.0.0.1:1/0")
    client = app.test_client()
    sign_in(client, accounts["compliance"])
    post_form(client, "/console/ledger", {})
    page = client.get("/console/ledger").text
    assert "The verification could not be started." in page
    assert "Verify the ledger now" in page
    assert _runs(console_db) == []


def test_one_verification_at_a_time_and_a_lost_one_holds_nothing_back(session):
    first, created = request_verification(session, "console:a@example.com")
    assert created
    again, created = request_verification(session, "console:b@example.com")
    assert not created and again.id == first.id
    first.started_at = utcnow() - LOST_AFTER - timedelta(minutes=1)  # its worker died
    session.commit()
    assert pending_verification(session) is None
    later, created = request_verification(session, "console:b@example.com")
    assert created and later.id != first.id


def test_a_job_that_runs_twice_records_one_result(session, app):
    run, _ = request_verification(session, "console:a@example.com")
    report = run_requested(session, run.id)
    assert report is not None and report.ok
    assert run_requested(session, run.id) is None
    with app.app_context():
        assert verify_ledger(run.id) is None
    finished = session.scalars(sa.select(ConsentVerification)).all()
    assert [(r.id, r.ok) for r in finished] == [(run.id, True)]
