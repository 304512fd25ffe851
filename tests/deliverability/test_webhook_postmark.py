"""Postmark's Bounce and Spam Complaint webhooks, with HTTP basic credentials, about emails the
service really sent."""

import base64
import json

import pytest

from tests.deliverability.support import bounce_app, send_welcome
from tests.deliverability.webhook_support import state

USER, PASSWORD = "postmark", "a-long-webhook-password"


@pytest.fixture
def app(make_app, smtp):
    return bounce_app(
        make_app, smtp, postmark_webhook_user=USER, postmark_webhook_password=PASSWORD
    )


def credentials(user: str = USER, password: str = PASSWORD) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def record(recipient: str, record_id: int = 42, **fields) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": record_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message.",
        "Details": f"smtp;550 5.1.1 The email account that you tried to reach does not exist: "
        f"{recipient}",
        "Email": recipient,
        "From": "stay-in-the-loop@newsletter.example.com",
        "BouncedAt": "2026-12-04T13:28:10.2735393-04:00",
        "Inactive": True,
        "CanActivate": True,
        "MessageStream": "outbound",
        **fields,
    }


def post(app, body: dict, headers=None):
    return app.test_client().post(
        "/webhooks/bounces/postmark",
        data=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            **(credentials() if headers is None else headers),
        },
    )


def test_a_hard_bounce_found_by_its_address_suppresses_it(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    reply = post(app, record(sent.recipient))
    assert reply.status_code == 200 and reply.json == {"outcomes": {"recorded": 1}}
    after = state(session)
    assert after["bounces"] == [("hard", "postmark", None, True, sent.lead_id)]
    assert after["bounced"] == [sent.lead_id]


def test_the_message_id_in_the_bounce_content_finds_the_email(app, smtp, session):
    first = send_welcome(app, smtp, session, "first@example.com")
    send_welcome(app, smtp, session, "second@example.com")
    content = "From: MAILER-DAEMON@mx.example\nSubject: Undelivered\n\n--\nMessage-ID: x\n"
    content = f"X-Original-Message-ID: {first.message_id}\n" + content
    # The Email field names someone else: the quoted Message-ID wins over the address.
    reply = post(app, record("second@example.com", Content=content))
    assert reply.status_code == 200
    assert state(session)["bounced"] == [first.lead_id]


def test_a_spam_complaint_withdraws_and_a_transient_bounce_is_counted(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    transient = record(sent.recipient, 7, Type="Transient", TypeCode=2)
    assert post(app, transient).status_code == 200
    complaint = record(sent.recipient, 8, RecordType="SpamComplaint", Type="SpamComplaint")
    assert post(app, complaint).status_code == 200
    auto_reply = record(sent.recipient, 9, Type="AutoResponder", TypeCode=64)
    assert post(app, auto_reply).json == {"outcomes": {"ignored": 1}}
    after = state(session)
    assert [b[:4] for b in after["bounces"]] == [
        ("soft", "postmark", None, False),
        ("complaint", "postmark", None, False),
    ]
    assert after["withdrawn"] == [sent.lead_id] and after["bounced"] == []


def test_a_bounce_for_an_address_we_never_mailed_changes_nothing(app, smtp, session):
    send_welcome(app, smtp, session)
    before = state(session)
    reply = post(app, record("stranger@example.org"))
    assert reply.json == {"outcomes": {"unmatched": 1}}
    assert {**state(session), "taken": before["taken"]} == before


def test_calls_without_the_credentials_change_nothing(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    before = state(session)
    for headers in ({}, credentials(password="wrong-password-123"), credentials(user="x")):
        reply = post(app, record(sent.recipient), headers)
        assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Basic")
    assert state(session) == before


def test_a_replay_is_answered_and_the_same_id_saying_more_is_refused(app, smtp, session):
    sent = send_welcome(app, smtp, session)
    transient = record(sent.recipient, 7, Type="Transient", TypeCode=2)
    assert post(app, transient).status_code == 200
    after = state(session)
    assert post(app, transient).json == {"outcomes": {"duplicate": 1}}
    reply = post(app, record(sent.recipient, 7))  # the same record id, now "HardBounce"
    assert reply.status_code == 403
    assert state(session) == after
