"""One outbox job, run in-process against a real SMTP server (both databases): at most once per
try, every try recorded, retries, final failures kept, and what a lost try leaves behind."""

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from leadsvc.db import utcnow
from leadsvc.dealers import routing
from leadsvc.jobs.tasks import deliver_batch, run_delivery
from leadsvc.outbox.messages import reclaim_expired
from leadsvc.outbox.models import OutboxMessage
from tests.conftest import wait_until
from tests.factories import valid_signup
from tests.jobs.support import (
    FAST,
    add_dealer,
    attempts,
    drain,
    invoke,
    kinds_and_statuses,
    outbox,
)


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


@pytest.fixture
def mail_app(make_app, smtp):
    return make_app(smtp_url=smtp.url, **FAST)


@pytest.fixture
def welcome(mail_app, session) -> int:
    """A signup whose welcome email is in the outbox, not yet sent; returns the row id."""
    reply = mail_app.test_client().post("/api/v1/signups", json=valid_signup())
    assert reply.status_code == 202
    [row] = outbox(session)
    assert (row.kind, row.status, row.attempts) == ("welcome_email", "pending", 0)
    return row.id


def expire_lease(session, outbox_id: int) -> None:
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(lease_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()


def test_a_job_delivered_twice_sends_once(mail_app, session, smtp, welcome):
    assert run_delivery(mail_app, welcome, runner="outbox-1-1") == "sent"
    assert run_delivery(mail_app, welcome, runner="outbox-1-1") == "duplicate"
    assert len(smtp.wait_for(1)) == 1
    assert attempts(session, welcome) == [(1, "sent"), (None, "duplicate")]
    [row] = outbox(session)
    assert (row.status, row.attempts, row.lease_until) == ("sent", 1, None)
    assert row.sent_at is not None


def test_a_temporary_smtp_failure_is_retried_until_the_tries_run_out_and_kept(
    mail_app, session, smtp, welcome
):
    smtp.reject_codes = ["451 4.3.0 Try again later"] * 3  # three tries: the first and 2 retries
    for number in (1, 2, 3):
        with pytest.raises(Exception, match="SMTP 451 at end of data"):
            run_delivery(mail_app, welcome)
        [row] = outbox(session)
        if number < 3:
            assert (row.status, row.attempts) == ("pending", number)
            assert row.next_attempt_at > utcnow() - timedelta(seconds=1)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error == "DeliveryError: SMTP 451 at end of data: 4.3.0 Try again later"
    assert attempts(session, welcome) == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert smtp.received == []

    status = invoke(mail_app, "outbox", "status")
    assert status.exit_code == 0
    counts = status.output.split("\n")[1].split()
    # pending, queued, sending, handed_off, sent, failed, unknown, skipped
    assert counts == ["welcome_email", "0", "0", "0", "0", "0", "1", "0", "0"]
    assert "nothing pending" in status.output
    retried = invoke(mail_app, "outbox", "retry", "--failed")
    assert retried.exit_code == 0 and f"1 rows queued again: {welcome}" in retried.output
    assert kinds_and_statuses(session) == [("welcome_email", "pending")]
    assert "oldest pending: row" in invoke(mail_app, "outbox", "status").output
    drain(mail_app)
    assert len(smtp.wait_for(1)) == 1
    assert attempts(session, welcome)[-1] == (1, "sent")  # a fresh set of tries after the fix
    assert len(attempts(session, welcome)) == 4  # the failed tries are kept


def test_a_permanent_rejection_fails_at_once(mail_app, session, smtp, welcome):
    smtp.reject_codes = ["550 5.1.1 <jane.doe@example.com>: mailbox unavailable"]
    with pytest.raises(Exception, match="SMTP 550"):
        run_delivery(mail_app, welcome)
    [row] = outbox(session)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "jane" not in row.last_error and "<address>" in row.last_error  # no address kept


def test_a_batch_of_emails_goes_over_one_smtp_session_and_a_refusal_stays_its_own(
    mail_app, session, smtp
):
    """One job's emails share one SMTP session. A recipient the server refuses in the middle
    fails that row alone (back to pending for its next try); every other email arrives once."""
    people = ["first", "busy", "second", "third"]
    for name in people:
        body = valid_signup(email=f"{name}@example.com")
        assert mail_app.test_client().post("/api/v1/signups", json=body).status_code == 202
    smtp.refused_recipients = {"busy@example.com": "450 4.2.1 mailbox busy"}
    ids = [row.id for row in outbox(session)]
    outcomes, errors = deliver_batch(mail_app, ids, runner="batch")
    assert list(outcomes.values()) == ["sent", "failed", "sent", "sent"]
    assert list(errors) == [ids[1]]
    assert [m["To"] for m in smtp.messages()] == [
        "first@example.com",
        "second@example.com",
        "third@example.com",
    ]
    assert len(set(smtp.peers)) == 1
    assert kinds_and_statuses(session) == [
        ("welcome_email", "sent"),
        ("welcome_email", "pending"),
        ("welcome_email", "sent"),
        ("welcome_email", "sent"),
    ]
    assert attempts(session, ids[1]) == [(1, "failed")]
    smtp.refused_recipients = {}
    wait_until(lambda: drain(mail_app) == 1, 5, "the refused row's retry", interval=0.2)
    assert [m["To"] for m in smtp.messages()][3:] == ["busy@example.com"]


def test_an_unreachable_mail_server_is_a_retried_failure(make_app, session, welcome):
    closed = make_app(smtp_url="smtp://127.0.0.1:1", **FAST)
    with pytest.raises(Exception, match="SMTP: ConnectionRefusedError"):
        run_delivery(closed, welcome)
    assert kinds_and_statuses(session) == [("welcome_email", "pending")]
    assert attempts(session, welcome) == [(1, "failed")]


def test_retry_refuses_rows_that_were_sent(mail_app, session, smtp, welcome):
    run_delivery(mail_app, welcome)
    result = invoke(mail_app, "outbox", "retry", str(welcome))
    assert result.exit_code == 1 and "is sent" in result.output
    assert kinds_and_statuses(session) == [("welcome_email", "sent")]


def test_a_try_that_died_before_the_hand_off_is_sent_again(mail_app, session, smtp, welcome):
    """The lease ran out while the row was `sending`: nothing left, so the next run sends."""
    session.execute(sa.update(OutboxMessage).values(status="sending", attempts=1))
    session.commit()
    expire_lease(session, welcome)
    assert reclaim_expired(session, max_attempts=3) == {welcome: "pending"}
    [row] = outbox(session)
    assert (row.status, row.generation) == ("pending", 2)
    assert run_delivery(mail_app, welcome) == "sent"
    assert len(smtp.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("kind", "settled"), [("welcome_email", "unknown"), ("dealer_webhook", "pending")]
)
def test_a_try_that_died_after_the_hand_off(session, welcome, kind, settled):
    """An email handed over may have arrived: `unknown`, never resent by itself. A webhook
    carries a delivery id the dealer deduplicates on, so it is tried again."""
    session.execute(sa.update(OutboxMessage).values(kind=kind, status="handed_off", attempts=1))
    session.commit()
    expire_lease(session, welcome)
    assert reclaim_expired(session, max_attempts=3) == {welcome: settled}
    [row] = outbox(session)
    assert row.status == settled
    if settled == "unknown":
        assert "may have arrived" in row.last_error


def test_a_try_that_lost_its_claim_does_not_send(mail_app, session, smtp, welcome):
    """A try stuck past its lease (a hung mail server) is taken over; when it wakes it finds
    the claim gone at the hand-off and sends nothing, so the person gets one email."""
    stall = smtp.stall("rcpt")
    outcome = {}

    def stuck_try():
        try:
            outcome["first"] = run_delivery(mail_app, welcome, runner="first")
        except Exception as error:
            outcome["first"] = type(error).__name__

    first = threading.Thread(target=stuck_try)
    first.start()
    assert stall.reached.wait(10)
    expire_lease(session, welcome)
    assert run_delivery(mail_app, welcome, runner="second") == "sent"
    stall.release()
    first.join(10)
    assert outcome["first"] == "LostClaim"
    wait_until(lambda: attempts(session, welcome)[0][1] != "running", 5, "the first try to end")
    assert len(smtp.received) == 1
    assert attempts(session, welcome) == [(1, "interrupted"), (2, "sent")]
    assert kinds_and_statuses(session) == [("welcome_email", "sent")]


def test_a_lead_that_moved_dealer_is_told_to_the_new_dealer(mail_app, session, smtp):
    add_dealer(session, code="NY1", zip5="10019")
    mail_app.test_client().post("/api/v1/signups", json=valid_signup(zip="10019"))
    add_dealer(session, code="NJ1", zip5="07030")
    from leadsvc.dealers.directory import deactivate_dealer

    deactivate_dealer(session, "NY1")  # the lead moves to NJ1 before its notice went out
    drain(mail_app)
    dealer_mail = [m["To"] for m in smtp.wait_for(2) if "leads-" in m["To"]]
    assert dealer_mail == ["MINI NJ1 <leads-nj1@example.com>"]
    assert kinds_and_statuses(session) == [
        ("welcome_email", "sent"),
        ("dealer_email", "skipped"),
        ("dealer_email", "sent"),
    ]


def test_the_outbox_is_written_in_the_signup_transaction(mail_app, session, smtp, monkeypatch):
    """A signup that fails after writing its outbox rows leaves none behind, dispatches none."""
    from leadsvc.signups import service

    real_add = service.add_messages

    def add_then_fail(*args, **kwargs):
        assert real_add(*args, **kwargs)  # the rows were written...
        raise RuntimeError("boom")  # ...and the transaction fails before its commit

    monkeypatch.setattr(service, "add_messages", add_then_fail)
    assert mail_app.test_client().post("/api/v1/signups", json=valid_signup()).status_code == 500
    assert outbox(session) == []
    assert drain(mail_app) == 0 and smtp.received == []


def test_an_unknown_row_is_resent_only_when_asked_by_its_id(mail_app, session, smtp, welcome):
    session.execute(sa.update(OutboxMessage).values(status="unknown", attempts=1))
    session.commit()
    assert "0 rows queued again" in invoke(mail_app, "outbox", "retry", "--failed").output
    assert drain(mail_app) == 0
    result = invoke(mail_app, "outbox", "retry", str(welcome))
    assert result.exit_code == 0 and f"1 rows queued again: {welcome}" in result.output
    drain(mail_app)
    assert len(smtp.wait_for(1)) == 1
    assert kinds_and_statuses(session) == [("welcome_email", "sent")]


def test_worker_and_relay_need_redis(app):
    for command in (["worker"], ["relay", "--once"]):
        result = invoke(app, *command)
        assert result.exit_code == 1 and "REDIS_URL is not set" in result.output
