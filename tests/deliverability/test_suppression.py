"""A suppressed address is never sent to, not even by `leadsvc outbox retry`; a new signup from
it is accepted, recorded and flagged, and its confirmation is held back while the address is
known to bounce hard (HARD_BOUNCE_DAYS)."""

import logging
import re
from datetime import timedelta

import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.db import utcnow
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.deliverability.support import bounce_app, ingest, send_welcome
from tests.factories import valid_signup
from tests.jobs.support import drain, invoke, parts

HELD_BACK = "suppressed: mail to the address bounced"


def _rows(session) -> list[tuple[str, str, str | None]]:
    session.rollback()
    query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    return [(row.kind, row.status, row.last_error) for row in session.scalars(query)]


def _given(session, lead_id: int) -> int:
    return session.scalar(
        sa.select(sa.func.count()).where(
            ConsentEvent.lead_id == lead_id, ConsentEvent.event_type == "given"
        )
    )


def test_retry_of_a_failed_email_to_a_suppressed_address_sends_nothing(
    make_app, smtp, session, tmp_path
):
    app = bounce_app(make_app, smtp, double_opt_in=True)
    confirm = send_welcome(app, smtp, session)  # double opt-in: the confirmation email
    link = re.search(r"https?://\S+?(/confirm/\S+)", parts(smtp.messages()[0])["text/plain"])[1]
    smtp.reject_codes = ["550 5.7.1 Message rejected as spam"]
    assert app.test_client().post(link).status_code == 200  # confirmed: the welcome is queued
    drain(app)
    assert [row[:2] for row in _rows(session)] == [
        ("confirm_email", "sent"),
        ("welcome_email", "failed"),
    ]

    ingest(app, tmp_path, confirm.notification("postfix_hard.eml"))  # the address bounced
    retried = invoke(app, "outbox", "retry", "--failed")
    assert retried.exit_code == 0 and "1 rows queued again" in retried.output
    drain(app)
    assert _rows(session)[1] == ("welcome_email", "skipped", HELD_BACK)
    assert len(smtp.received) == 1  # only the confirmation, before the bounce


def test_a_new_signup_from_a_suppressed_address_is_recorded_flagged_and_not_confirmed(
    make_app, smtp, session, tmp_path, caplog
):
    app = bounce_app(make_app, smtp, double_opt_in=True, hard_bounce_days=30)
    confirm = send_welcome(app, smtp, session)
    ingest(app, tmp_path, confirm.notification("postfix_hard.eml"))

    with caplog.at_level(logging.INFO, logger="leadsvc.signups.service"):
        reply = app.test_client().post("/api/v1/signups", json=valid_signup())
    assert reply.status_code == 202  # accepted, with the same answer as any signup
    drain(app)
    session.rollback()
    lead = session.get(Lead, confirm.lead_id)
    assert (lead.signup_count, lead.consent_status) == (2, "pending")
    assert lead.bounced_at is not None and _given(session, lead.id) == 2  # recorded, flagged
    flagged = [r.getMessage() for r in caplog.records if "bounced" in r.getMessage()]
    assert flagged == [
        f"signup from an address whose mail bounced: lead {lead.id} stays suppressed"
    ]
    assert _rows(session)[-1] == ("confirm_email", "skipped", HELD_BACK)
    assert len(smtp.received) == 1

    # Once the last hard bounce is older than HARD_BOUNCE_DAYS, a signup's confirmation goes
    # out again (and confirming it lifts the suppression).
    session.execute(
        sa.update(Lead).where(Lead.id == lead.id).values(bounced_at=utcnow() - timedelta(days=31))
    )
    session.commit()
    assert app.test_client().post("/api/v1/signups", json=valid_signup()).status_code == 202
    drain(app)
    assert _rows(session)[-1][:2] == ("confirm_email", "sent")
    latest = smtp.wait_for(2)[-1]
    link = re.search(r"https?://\S+?(/confirm/\S+)", parts(latest)["text/plain"])[1]
    assert app.test_client().post(link).status_code == 200
    session.rollback()
    assert session.get(Lead, lead.id).bounced_at is None
