"""Notifications as MTAs and mailbox providers write them, ingested by `leadsvc bounces ingest`
against emails the service really sent (through a real SMTP server)."""

import logging

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.deliverability.models import BounceEvent
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.deliverability.support import BOUNCE_DOMAIN, bounce_app, send_welcome


@pytest.fixture
def app(make_app, smtp):
    return bounce_app(make_app, smtp)


def ingest(app, tmp_path, *datas: bytes, stdin: bytes | None = None):
    paths = []
    for number, data in enumerate(datas):
        path = tmp_path / f"notification-{number}.eml"
        path.write_bytes(data)
        paths.append(str(path))
    with app.app_context():  # this app's, whichever app's context the test holds
        result = app.test_cli_runner().invoke(args=["bounces", "ingest", *paths], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def events(session):
    session.rollback()
    return [
        (e.kind, e.status, e.suppressed)
        for e in session.scalars(sa.select(BounceEvent).order_by(BounceEvent.id))
    ]


def test_the_envelope_sender_names_the_outbox_row_and_the_message_id_is_kept(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    local, _, domain = sent.envelope_sender.partition("@")
    assert domain == BOUNCE_DOMAIN and local.startswith("bounces+")
    row = session.scalars(sa.select(OutboxMessage)).one()
    assert local == f"bounces+{row.id}-" + local.rsplit("-", 1)[1]
    assert row.message_id == sent.message_id


def test_without_bounce_domain_the_envelope_sender_is_mail_from(make_app, smtp, session):
    app = bounce_app(make_app, smtp, bounce_domain=None)
    sent = send_welcome(app, smtp, session)
    assert "bounces+" not in sent.envelope_sender and "@" in sent.envelope_sender


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        ("postfix_hard.eml", "5.1.1"),
        ("exim_hard.eml", "5.0.0"),
        ("exchange_online_hard.eml", "5.1.10"),
        ("gmail_hard.eml", "5.1.1"),
    ],
)
def test_a_hard_bounce_suppresses_the_address(app, smtp, session, tmp_path, sample, status):
    sent = send_welcome(app, smtp, session)
    output = ingest(app, tmp_path, sent.notification(sample))
    assert "recorded 1" in output and "hard 1" in output
    assert events(session) == [("hard", status, True)]
    assert session.get(Lead, sent.lead_id).bounced_at is not None
    event = session.scalars(sa.select(BounceEvent)).one()
    assert event.outbox_id is not None and event.lead_id == sent.lead_id
    assert sent.recipient not in (event.diagnostic or "")


def test_soft_bounces_suppress_at_the_limit(make_app, smtp, session, tmp_path):
    app = bounce_app(make_app, smtp, soft_bounce_limit=2)
    sent = send_welcome(app, smtp, session)
    first = sent.notification("gmail_delayed.eml")
    second = first.replace(b"SMTPIN_ADDED_DELAY@", b"SMTPIN_ADDED_DELAY2@")
    ingest(app, tmp_path, first)
    assert events(session) == [("soft", "4.2.2", False)]
    assert session.get(Lead, sent.lead_id).bounced_at is None
    ingest(app, tmp_path, second)
    assert events(session) == [("soft", "4.2.2", False), ("soft", "4.2.2", True)]
    assert session.get(Lead, sent.lead_id).bounced_at is not None


def test_a_complaint_is_a_withdrawal_like_an_unsubscribe(app, smtp, session, tmp_path):
    sent = send_welcome(app, smtp, session)
    output = ingest(app, tmp_path, stdin=sent.notification("arf_complaint.eml"))
    assert "complaint 1" in output
    session.rollback()
    lead = session.get(Lead, sent.lead_id)
    assert lead.consent_status == "withdrawn" and lead.unsubscribed_at is not None
    withdrawn = session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.event_type == "withdrawn")
    ).one()
    assert withdrawn.lead_id == sent.lead_id and withdrawn.source_url == "complaint:message"
    assert events(session) == [("complaint", None, False)]


def test_the_same_notification_twice_changes_nothing_more(app, smtp, session, tmp_path):
    sent = send_welcome(app, smtp, session)
    complaint = sent.notification("arf_complaint.eml")
    bounce = sent.notification("postfix_hard.eml")
    ingest(app, tmp_path, complaint, bounce)
    session.rollback()
    before = (events(session), session.scalar(sa.select(sa.func.count(ConsentEvent.id))))
    output = ingest(app, tmp_path, complaint, bounce)
    assert "duplicate 2" in output
    assert (events(session), session.scalar(sa.select(sa.func.count(ConsentEvent.id)))) == before


def test_auto_replies_are_ignored_and_malformed_messages_never_stop_a_batch(
    app, smtp, session, tmp_path, caplog
):
    sent = send_welcome(app, smtp, session)
    batch = [
        sent.notification("malformed.eml"),
        sent.notification("out_of_office.eml"),
        sent.notification("postfix_hard.eml"),
    ]
    mbox = b"".join(b"From MAILER-DAEMON Tue Mar  4 10:15:02 2025\n" + m + b"\n" for m in batch)
    with caplog.at_level(logging.INFO):
        output = ingest(app, tmp_path, mbox)
    assert "malformed 1" in output and "auto_reply 1" in output and "recorded 1" in output
    assert events(session) == [("hard", "5.1.1", True)]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("leadsvc"))
    assert "message 1 of the batch is malformed" in logged
    assert sent.recipient not in logged


def test_a_notification_about_mail_that_is_not_ours_changes_nothing(app, smtp, session, tmp_path):
    sent = send_welcome(app, smtp, session)
    forged = sent.notification("postfix_hard.eml").replace(
        sent.envelope_sender.encode(), b"bounces+999-0123456789abcdef@" + BOUNCE_DOMAIN.encode()
    )
    forged = forged.replace(sent.message_id.encode(), b"<someone-else@example.org>")
    assert "unmatched 1" in ingest(app, tmp_path, forged)
    assert events(session) == [] and session.get(Lead, sent.lead_id).bounced_at is None
