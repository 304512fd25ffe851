"""SendGrid's signed Event Webhook, signed by a key the test makes, about emails the service
really sent; and every provider's endpoint off while its settings are unset."""

import json
import time

import pytest

from leadsvc.settings import Settings, SettingsError
from tests.deliverability.support import bounce_app, send_welcome
from tests.deliverability.webhook_support import SendGridSigner, state


@pytest.fixture(scope="module")
def signer():
    return SendGridSigner()


@pytest.fixture
def app(make_app, smtp, signer):
    return bounce_app(make_app, smtp, sendgrid_webhook_public_key=signer.public_key)


def event(sent, name: str, event_id: str, **fields) -> dict:
    return {
        "email": sent.recipient,
        "timestamp": int(time.time()),
        "smtp-id": sent.message_id,
        "event": name,
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def post(app, signer, events, headers=None):
    body = json.dumps(events).encode()
    return app.test_client().post(
        "/webhooks/bounces/sendgrid", data=body, headers=headers or signer.headers(body)
    )


def test_bounces_and_spam_reports_are_recorded(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    events = [
        event(sent, "delivered", "e-0", response="250 OK"),
        event(sent, "deferred", "e-1", response="451 4.2.2 mailbox full", attempt="1"),
        event(sent, "deferred", "e-2", response="451 4.2.2 mailbox full", attempt="2"),
        event(sent, "spamreport", "e-3"),
    ]
    reply = post(app, signer, events)
    assert reply.status_code == 200, reply.data
    # Two deferrals of one message are one soft bounce; delivered is no bounce at all.
    assert reply.json == {"outcomes": {"recorded": 2, "duplicate": 1, "ignored": 1}}
    after = state(session)
    assert [b[:3] for b in after["bounces"]] == [
        ("soft", "sendgrid", "4.2.2"),
        ("complaint", "sendgrid", None),
    ]
    assert after["withdrawn"] == [sent.lead_id] and after["bounced"] == []


@pytest.mark.parametrize(
    "fields",
    [
        {"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 unknown"},
        {"event": "dropped", "reason": "Bounced Address"},
    ],
    ids=["bounce", "dropped"],
)
def test_a_hard_bounce_suppresses_the_address(app, smtp, session, signer, fields):
    sent = send_welcome(app, smtp, session)
    fields = dict(fields)  # the same parameters serve both databases
    assert post(app, signer, [event(sent, fields.pop("event"), "e-9", **fields)]).status_code == 200
    after = state(session)
    assert [b[:2] for b in after["bounces"]] == [("hard", "sendgrid")]
    assert after["bounced"] == [sent.lead_id]


def test_a_block_is_a_soft_bounce(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    block = event(sent, "bounce", "e-5", type="blocked", status="5.7.1", reason="550 5.7.1 spam")
    assert post(app, signer, [block]).status_code == 200
    assert [b[:4] for b in state(session)["bounces"]] == [("soft", "sendgrid", "5.7.1", False)]


def test_unsigned_wrongly_signed_or_stale_calls_change_nothing(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    events = [event(sent, "bounce", "e-1", type="bounce", status="5.1.1")]
    body = json.dumps(events).encode()
    before = state(session)
    assert post(app, signer, events, {"Content-Type": "application/json"}).status_code == 401
    forged = signer.headers(body.replace(b"5.1.1", b"5.1.2"))
    assert post(app, signer, events, forged).status_code == 403
    stale = signer.headers(body, int(time.time()) - 11 * 60)
    reply = post(app, signer, events, stale)
    assert reply.status_code == 403 and b"too old" in reply.data
    assert state(session) == before


def test_a_replay_is_answered_and_changes_nothing(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    events = [event(sent, "spamreport", "e-1")]
    assert post(app, signer, events).status_code == 200
    after = state(session)
    again = post(app, signer, events)
    assert again.status_code == 200 and again.json == {"outcomes": {"duplicate": 1}}
    other = [event(sent, "bounce", "e-1", type="bounce", status="5.1.1")]
    assert post(app, signer, other).status_code == 403
    assert state(session) == after


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "postmark", "mailgun"])
def test_a_provider_without_settings_answers_404(make_app, provider):
    reply = (
        make_app().test_client().post(f"/webhooks/bounces/{provider}", json=[{"event": "bounce"}])
    )
    assert reply.status_code == 404
    assert reply.content_type.startswith("text/plain") and b"not configured" in reply.data


def test_webhook_settings_are_read_and_checked(tmp_path):
    base = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40}
    settings = Settings.from_env(
        {
            **base,
            "SES_TOPIC_ARNS": "arn:aws:sns:us-east-1:123456789012:a, arn:aws:sns:eu-west-1:1"
            "23456789012:b",
            "POSTMARK_WEBHOOK_USER": "postmark",
            "POSTMARK_WEBHOOK_PASSWORD": "p" * 16,
            "SNS_TRUSTED_ORIGIN": "http://evil.example",
        }
    )
    assert settings.ses_topic_arns == (
        "arn:aws:sns:us-east-1:123456789012:a",
        "arn:aws:sns:eu-west-1:123456789012:b",
    )
    assert settings.sns_trusted_origin.startswith("https://sns")  # never from the environment
    for wrong in (
        {"SES_TOPIC_ARNS": "my-topic"},
        {"SENDGRID_WEBHOOK_PUBLIC_KEY": "not base64!"},
        {"POSTMARK_WEBHOOK_USER": "postmark"},
        {"POSTMARK_WEBHOOK_USER": "postmark", "POSTMARK_WEBHOOK_PASSWORD": "short"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env({**base, **wrong})


def test_a_batch_larger_than_a_form_is_taken(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    opens = [event(sent, "open", f"open-{n}", useragent="x" * 200) for n in range(100)]
    body = json.dumps(opens).encode()
    assert len(body) > 16 * 1024  # the app's limit for everything else
    reply = post(app, signer, opens)
    assert reply.status_code == 200 and reply.json == {"outcomes": {"ignored": 100}}
