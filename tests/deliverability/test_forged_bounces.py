"""A forged bounce cannot suppress someone: the Message-ID it would have to quote is not to be
guessed, and a made-up envelope token is refused."""

import dataclasses
import re

import pytest
import sqlalchemy as sa

from leadsvc.deliverability.models import BounceEvent
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.deliverability.support import BOUNCE_DOMAIN, bounce_app, send_welcome

MAIL_FROM = "stay-in-the-loop@newsletter.example.com"


@pytest.fixture
def app(make_app, smtp):
    return bounce_app(make_app, smtp)


def ingest(app, tmp_path, data: bytes) -> str:
    path = tmp_path / "notification.eml"
    path.write_bytes(data)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["bounces", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def nothing_recorded(session, lead_id: int) -> bool:
    session.rollback()
    events = session.scalar(sa.select(sa.func.count(BounceEvent.id)))
    return events == 0 and session.get(Lead, lead_id).bounced_at is None


def test_the_message_id_carries_a_secret_tag(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    row = session.scalars(sa.select(OutboxMessage)).one()
    assert re.fullmatch(rf"<outbox-{row.id}\.welcome-email\.[0-9a-f]{{32}}@[^>]+>", sent.message_id)


def test_a_forged_bounce_with_a_guessed_message_id_changes_nothing(app, smtp, session, tmp_path):
    sent = send_welcome(app, smtp, session)
    row_id = session.scalars(sa.select(OutboxMessage.id)).one()
    guesses = [
        f"<outbox-{row_id}.welcome-email@newsletter.example.com>",
        f"<outbox-{row_id}.welcome-email.{'0' * 32}@newsletter.example.com>",
    ]
    for guess in guesses:
        forged = dataclasses.replace(sent, envelope_sender=MAIL_FROM, message_id=guess)
        assert "unmatched 1" in ingest(app, tmp_path, forged.notification("postfix_hard.eml"))
    assert nothing_recorded(session, sent.lead_id)
    # The same bounce quoting the real Message-ID is believed.
    genuine = dataclasses.replace(sent, envelope_sender=MAIL_FROM)
    assert "recorded 1" in ingest(app, tmp_path, genuine.notification("postfix_hard.eml"))
    assert session.get(Lead, sent.lead_id).bounced_at is not None


def test_a_made_up_envelope_token_is_refused_when_bounce_domain_is_set(
    app, smtp, session, tmp_path
):
    sent = send_welcome(app, smtp, session)
    row_id = session.scalars(sa.select(OutboxMessage.id)).one()
    made_up = f"bounces+{row_id}-0123456789abcdef@{BOUNCE_DOMAIN}"
    forged = dataclasses.replace(sent, envelope_sender=made_up)
    assert "unmatched 1" in ingest(app, tmp_path, forged.notification("postfix_hard.eml"))
    assert nothing_recorded(session, sent.lead_id)
