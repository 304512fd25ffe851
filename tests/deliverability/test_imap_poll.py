"""`leadsvc bounces poll` against a real IMAP server (a private Dovecot): what it recognises is
recorded and moved to the processed folder; anything else stays in the INBOX, never deleted."""

import os
from email import message_from_bytes

import pytest
import sqlalchemy as sa

from leadsvc.deliverability.models import BounceEvent
from leadsvc.jobs.relay import Relay
from leadsvc.leads.models import Lead
from tests.conftest import IN_CI, free_port
from tests.deliverability.dovecot import DOVECOT, running_dovecot
from tests.deliverability.support import bounce_app, send_welcome

PROCESSED = "leadsvc-processed"
QUESTION = (
    b"From: A Customer <customer@example.org>\r\n"
    b"To: bounces@bounces.mini-stay.example\r\n"
    b"Subject: Question about my order\r\n"
    b"Message-ID: <question-1@example.org>\r\n"
    b"Date: Tue, 04 Mar 2025 10:15:02 +0000\r\n"
    b"\r\n"
    b"Hello, when will my car arrive?\r\n"
)


@pytest.fixture
def dovecot(tmp_path):
    """A private Dovecot on a free loopback port; fails in CI (skips elsewhere) without one."""
    if not os.access(DOVECOT, os.X_OK):
        message = f"Dovecot is not installed ({DOVECOT}: apt-get install dovecot-imapd)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with running_dovecot(tmp_path, free_port()) as server:
        yield server


def _poll(app) -> str:
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["bounces", "poll"])
    assert result.exit_code == 0, result.output
    return result.output


def _ids(messages: list[bytes]) -> list[str]:
    return [str(message_from_bytes(raw)["Message-ID"]) for raw in messages]


def test_poll_records_a_bounce_moves_it_and_leaves_an_unrecognised_message(
    make_app, smtp, session, dovecot
):
    app = bounce_app(make_app, smtp, bounce_imap_url=dovecot.url)
    sent = send_welcome(app, smtp, session)
    bounce = sent.notification("postfix_hard.eml")
    dovecot.deliver(bounce)
    dovecot.deliver(QUESTION)

    output = _poll(app)
    assert "recorded 1" in output and "unrecognised 1" in output, output
    session.rollback()
    assert session.get(Lead, sent.lead_id).bounced_at is not None
    event = session.scalars(sa.select(BounceEvent)).one()
    assert (event.kind, event.suppressed, event.lead_id) == ("hard", True, sent.lead_id)
    bounce_id = str(message_from_bytes(bounce)["Message-ID"])
    assert _ids(dovecot.folder(PROCESSED)) == [bounce_id]
    assert _ids(dovecot.folder("INBOX")) == ["<question-1@example.org>"]

    again = _poll(app)  # the question is read again, and left again; nothing is recorded twice
    assert "unrecognised 1" in again and "recorded" not in again, again
    assert _ids(dovecot.folder("INBOX")) == ["<question-1@example.org>"]
    assert _ids(dovecot.folder(PROCESSED)) == [bounce_id]
    session.rollback()
    assert session.scalar(sa.select(sa.func.count(BounceEvent.id))) == 1


def test_poll_says_what_failed_when_the_password_is_wrong(make_app, smtp, dovecot):
    url = dovecot.url.replace("bounce-mailbox-password", "wrong")
    app = bounce_app(make_app, smtp, bounce_imap_url=url)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["bounces", "poll"])
    assert result.exit_code != 0
    assert "the bounce mailbox" in result.output and "wrong" not in result.output


def test_the_relay_reads_the_bounce_mailbox_every_bounce_poll_seconds(
    make_app, smtp, session, dovecot, redis
):
    app = bounce_app(make_app, smtp, bounce_imap_url=dovecot.url, bounce_poll_seconds=3600)
    sent = send_welcome(app, smtp, session)
    dovecot.deliver(sent.notification("postfix_hard.eml"))
    relay = Relay(app, redis)
    assert relay.full_pass().bounce_mails == 1
    session.rollback()
    assert session.get(Lead, sent.lead_id).bounced_at is not None
    assert len(dovecot.folder(PROCESSED)) == 1
    dovecot.deliver(QUESTION)
    assert relay.full_pass().bounce_mails == 0  # the next read comes after BOUNCE_POLL_SECONDS
    assert _ids(dovecot.folder("INBOX")) == ["<question-1@example.org>"]


def test_an_unreadable_bounce_mailbox_never_stops_the_relay(make_app, redis, caplog):
    closed = f"imap://bounces:secret@127.0.0.1:{free_port()}/INBOX"
    app = make_app(bounce_imap_url=closed)
    report = Relay(app, redis).full_pass()
    assert report.bounce_mails == 0
    assert any(
        "relay: the bounce mailbox: ConnectionRefusedError" in r.getMessage()
        for r in caplog.records
    )
