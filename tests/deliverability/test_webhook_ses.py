"""Amazon SES notifications through SNS, signed by a key and certificate the test makes and
serves over real HTTP from an origin the test allows, about emails the service really sent."""

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.deliverability.providers.ses import SnsCertificates
from leadsvc.settings import SNS_TRUSTED_ORIGIN
from tests.deliverability.support import bounce_app, send_welcome
from tests.deliverability.webhook_support import (
    LOCAL_ORIGIN,
    TOPIC_ARN,
    SnsServer,
    SnsSigner,
    now_iso,
    ses_bounce,
    ses_complaint,
    signing_certificate,
    state,
)

CERT_PATH = "/SimpleNotificationService-test.pem"


@pytest.fixture(scope="module")
def key_and_certificate():
    return signing_certificate()


@pytest.fixture
def sns(key_and_certificate):
    server_side = SnsServer()
    server = server_side.serve()
    server_side.routes[CERT_PATH] = (200, {}, key_and_certificate[1])
    yield server_side
    server.shutdown()


@pytest.fixture
def signer(sns, key_and_certificate):
    return SnsSigner(key_and_certificate[0], sns.url + CERT_PATH)


@pytest.fixture
def app(make_app, smtp):
    return bounce_app(make_app, smtp, ses_topic_arns=(TOPIC_ARN,), sns_trusted_origin=LOCAL_ORIGIN)


def post(app, message: dict):
    return app.test_client().post(
        "/webhooks/bounces/ses",
        data=json.dumps(message),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_permanent_bounce_suppresses_the_address(app, smtp, session, signer, version):
    sent = send_welcome(app, smtp, session)
    reply = post(app, signer.sign(signer.notification(ses_bounce(sent)), version))
    assert reply.status_code == 200, reply.data
    assert reply.json == {"outcomes": {"recorded": 1}}
    after = state(session)
    assert after["bounces"] == [("hard", "ses", "5.1.1", True, sent.lead_id)]
    assert after["bounced"] == [sent.lead_id]


def test_without_a_verp_sender_the_message_id_finds_the_email(make_app, smtp, session, signer):
    app = bounce_app(
        make_app,
        smtp,
        bounce_domain=None,
        ses_topic_arns=(TOPIC_ARN,),
        sns_trusted_origin=LOCAL_ORIGIN,
    )
    first = send_welcome(app, smtp, session, "first@example.com")
    second = send_welcome(app, smtp, session, "second@example.com")
    notification = ses_bounce(first)
    # The recipient SES names is someone else: the Message-ID wins over the address.
    notification["bounce"]["bouncedRecipients"][0]["emailAddress"] = second.recipient
    assert post(app, signer.sign(signer.notification(notification))).status_code == 200
    assert state(session)["bounced"] == [first.lead_id]


def test_an_unsubscribe_confirmation_is_answered_and_changes_nothing(app, session, signer, sns):
    before = state(session)
    confirmation = {
        "Type": "UnsubscribeConfirmation",
        "MessageId": "m-unsub",
        "Token": "abc",
        "TopicArn": TOPIC_ARN,
        "Message": "You have unsubscribed from the topic.",
        "SubscribeURL": sns.url + "/confirm?Token=abc",
        "Timestamp": now_iso(),
    }
    reply = post(app, signer.sign(confirmation))
    assert reply.status_code == 200 and reply.json == {"outcomes": {"ignored": 1}}
    assert sns.requests == [CERT_PATH] and state(session) == before


def test_a_transient_bounce_is_counted_and_a_complaint_withdraws(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    soft = signer.notification(ses_bounce(sent, "Transient", "4.2.2"), "m-soft")
    assert post(app, signer.sign(soft)).status_code == 200
    complaint = signer.notification(ses_complaint(sent), "m-complaint")
    assert post(app, signer.sign(complaint)).status_code == 200
    after = state(session)
    assert [b[:4] for b in after["bounces"]] == [
        ("soft", "ses", "4.2.2", False),
        ("complaint", "ses", None, False),
    ]
    assert after["bounced"] == [] and after["withdrawn"] == [sent.lead_id]
    withdrawn = session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.event_type == "withdrawn")
    ).one()
    assert withdrawn.source_url == "complaint:ses"


def test_the_subscription_is_confirmed_on_the_sns_host_only(app, session, signer, sns):
    sns.routes["/confirm?Token=abc"] = (200, {}, b"<ConfirmSubscriptionResponse/>")
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-sub",
        "Token": "abc",
        "TopicArn": TOPIC_ARN,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": sns.url + "/confirm?Token=abc",
        "Timestamp": now_iso(),
    }
    assert post(app, signer.sign(confirmation)).status_code == 200
    assert sns.requests == [CERT_PATH, "/confirm?Token=abc"]
    elsewhere = {**confirmation, "MessageId": "m-sub-2", "SubscribeURL": "http://localhost/x"}
    reply = post(app, signer.sign(elsewhere))
    assert reply.status_code == 403 and b"not on an Amazon SNS host" in reply.data
    assert sns.requests == [CERT_PATH, "/confirm?Token=abc"]  # the key was kept: no refetch


def tampered(message: dict) -> dict:
    return {**message, "Message": message["Message"].replace("Permanent", "Transient")}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda m: {k: v for k, v in m.items() if k != "Signature"}, 401),
        (tampered, 403),
        (lambda m: {**m, "SignatureVersion": "3"}, 403),
        (lambda m: {**m, "SigningCertURL": "http://127.0.0.2:1/cert.pem"}, 403),
    ],
    ids=["unsigned", "tampered", "unknown-version", "cert-elsewhere"],
)
def test_a_call_not_signed_by_sns_changes_nothing(app, smtp, session, signer, change, status):
    sent = send_welcome(app, smtp, session)
    before = state(session)
    reply = post(app, change(signer.sign(signer.notification(ses_bounce(sent)))))
    assert reply.status_code == status
    assert reply.content_type.startswith("text/plain")
    assert state(session) == before


def test_a_stale_call_or_another_topic_changes_nothing(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    before = state(session)
    stale = signer.notification(ses_bounce(sent), Timestamp=now_iso(-timedelta(minutes=11)))
    assert post(app, signer.sign(stale)).status_code == 403
    other = signer.notification(ses_bounce(sent), TopicArn=TOPIC_ARN + "-someone-else")
    reply = post(app, signer.sign(other))
    assert reply.status_code == 403 and b"SES_TOPIC_ARNS" in reply.data
    assert state(session) == before


def test_a_replay_is_answered_and_changes_nothing(app, smtp, session, signer):
    sent = send_welcome(app, smtp, session)
    message = signer.sign(signer.notification(ses_complaint(sent)))
    assert post(app, message).status_code == 200
    after = state(session)
    again = post(app, message)
    assert again.status_code == 200 and again.json == {"outcomes": {"duplicate": 1}}
    assert state(session) == after
    # The same MessageId saying something else (signed: a topic's owner could send it).
    other = signer.sign(signer.notification(ses_bounce(sent), message["MessageId"]))
    reply = post(app, other)
    assert reply.status_code == 403 and b"received before" in reply.data
    assert state(session) == after


def test_with_the_default_origin_a_certificate_off_sns_is_never_fetched(
    make_app, smtp, session, signer, sns
):
    app = bounce_app(make_app, smtp, ses_topic_arns=(TOPIC_ARN,))
    sent = send_welcome(app, smtp, session)
    before = state(session)
    reply = post(app, signer.sign(signer.notification(ses_bounce(sent))))
    assert reply.status_code == 403 and state(session) == before
    assert sns.requests == []


def test_a_redirected_certificate_is_not_followed(app, smtp, session, signer, sns):
    sns.routes["/moved.pem"] = (302, {"Location": sns.url + CERT_PATH}, b"")
    sent = send_welcome(app, smtp, session)
    before = state(session)
    signer.cert_url = sns.url + "/moved.pem"
    reply = post(app, signer.sign(signer.notification(ses_bounce(sent))))
    assert reply.status_code == 502  # SNS tries again later; nothing was taken
    assert sns.requests == ["/moved.pem"] and state(session) == before


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem", True),
        ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com@evil.example/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/cert.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com\\@evil.example/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com\n.evil.example/cert.pem", False),
        ("https://xsns.us-east-1.amazonaws.com/cert.pem", False),
        (None, False),
    ],
)
def test_the_default_origin_is_sns_only(url, trusted):
    assert SnsCertificates(SNS_TRUSTED_ORIGIN, 1.0).trusted(url) is trusted
