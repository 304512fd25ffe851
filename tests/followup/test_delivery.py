"""The reminder and the move notice arrive: a real SMTP server and a real webhook receiver, the
rows run by the in-process drainer (which runs the follow-up pass too) and by the relay."""

from __future__ import annotations

import json

import pytest

from leadsvc.dealers import routing
from leadsvc.followup.clock import ManualClock, use_clock
from leadsvc.jobs.relay import relay_once
from tests.followup.conftest import DUE, HOOK_SECRET, REMIND, START, lead_of, load_dealers, sign_up
from tests.jobs.support import FAST, drain, verify_signature


@pytest.fixture
def wired(make_app, smtp, webhook_receiver, monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    app = make_app(smtp_url=smtp.url, **FAST)
    clock = ManualClock(START)
    use_clock(app, clock)
    from leadsvc.extensions import db

    with app.app_context(), db.sessionmaker(app)() as session:
        dealers = load_dealers(session, webhook_url=webhook_receiver.url + "/hook")
        yield app, clock, session, dealers


def test_the_reminder_email_and_webhook_arrive(wired, smtp, webhook_receiver):
    app, clock, session, _ = wired
    lead_id = sign_up(app.test_client(), session, "joy@example.com")
    drain(app)  # the welcome email, the ADF email and lead.created; the clock starts
    smtp.wait_for(2)
    webhook_receiver.wait_for(1)
    clock.set(REMIND)
    drain(app)
    reminder = smtp.wait_for(3)[-1]
    assert reminder["To"].addresses[0].addr_spec == "leads-nya@example.com"
    assert reminder["Subject"] == (
        f"Reminder: lead {lead_id} from MINI USA Stay In the Loop is waiting"
    )
    assert "half of your response target of 24 business hours" in reminder.get_content()
    hook = webhook_receiver.wait_for(2)[-1]
    headers = {key.lower(): value for key, value in hook["headers"].items()}
    assert headers["x-leadsvc-event"] == "lead.reminder"
    assert verify_signature(hook, HOOK_SECRET)
    body = json.loads(hook["body"])
    assert (body["lead"]["id"], body["dealer"]["code"]) == (lead_id, "NYA")
    assert body["response_target_hours"] == 24.0
    drain(app)
    assert len(smtp.received) == 3  # once


def test_the_relay_moves_the_lead_and_both_dealers_hear_of_it(wired, smtp, webhook_receiver, redis):
    app, clock, session, dealers = wired
    lead_id = sign_up(app.test_client(), session, "kim@example.com")
    drain(app)
    clock.set(DUE)
    relay_once(app, redis)
    assert lead_of(session, lead_id).dealer_id == dealers["NYB"]
    drain(app)  # what the relay handed to rq, run here instead of by a worker
    events = [
        {k.lower(): v for k, v in r["headers"].items()}["x-leadsvc-event"]
        for r in webhook_receiver.wait_for(3)
    ]
    assert events[-2:] == ["lead.reassigned", "lead.created"]
    subjects = [message["Subject"] for message in smtp.wait_for(4)]
    assert f"Lead {lead_id} from MINI USA Stay In the Loop has been reassigned" in subjects
