"""Dealer notifications: ADF 1.0 by email (valid against the DTD) and the signed JSON webhook."""

import json
import time

import pytest
import sqlalchemy as sa

from leadsvc.jobs.tasks import deliver_batch
from leadsvc.leads.models import Lead
from tests.factories import valid_signup
from tests.jobs.support import add_dealer, attempts, drain, outbox, validate_adf, verify_signature


@pytest.fixture
def webhook_dealer(mail_session, webhook_receiver):
    return add_dealer(mail_session, webhook_url=webhook_receiver.url)


def sign_up(client, **fields):
    assert client.post("/api/v1/signups", json=valid_signup(**fields)).status_code == 202


@pytest.mark.parametrize(
    ("fields", "models"),
    [
        ({"interests": ["Countryman", "Cooper S"]}, ["Countryman", "Cooper S"]),
        ({"first_name": "Siobhán", "last_name": "O'Brien & Sons"}, ["Any"]),
    ],
    ids=["interests", "no-interest-and-xml-characters"],
)
def test_the_dealer_gets_adf_xml_that_validates_against_the_dtd(
    mail_app, mail_client, mail_session, smtp, dealer, fields, models
):
    sign_up(mail_client, zip="10019-1234", **fields)
    drain(mail_app)
    [notice] = [m for m in smtp.wait_for(2) if m["To"] == "MINI NY1 <leads-ny1@example.com>"]
    lead = mail_session.scalars(sa.select(Lead)).one()

    assert notice.get_content_type() == "text/plain"
    assert notice["Subject"] == f"New lead {lead.id} from MINI USA Stay In the Loop"
    assert "List-Unsubscribe" not in notice  # a business notice, not a newsletter
    body = notice.get_content().replace("\r\n", "\n")  # lines end in CRLF on the wire
    assert body.startswith('<?xml version="1.0"?>\n<?adf version="1.0"?>\n')
    adf = validate_adf(body)
    prospect = adf.find("prospect")
    assert prospect.findtext("id") == str(lead.id)
    assert prospect.findtext("requestdate").startswith(str(lead.created_at.year))
    assert [v.findtext("make") for v in prospect.findall("vehicle")] == ["MINI"] * len(models)
    assert [v.findtext("model") for v in prospect.findall("vehicle")] == models
    contact = prospect.find("customer/contact")
    names = {name.get("part"): name.text for name in contact.findall("name")}
    typed = {"first": fields.get("first_name", "Jane"), "last": fields.get("last_name", "Doe")}
    assert names == typed
    assert contact.findtext("email") == "jane.doe@example.com"
    assert contact.findtext("address/postalcode") == "10019-1234"
    assert prospect.findtext("vendor/vendorname") == "MINI NY1"
    assert prospect.findtext("vendor/id") == "NY1"
    assert "Stay In the Loop" in prospect.findtext("provider/name")


def test_the_webhook_is_signed_and_verifies(
    mail_app, mail_client, mail_session, smtp, webhook_dealer, webhook_receiver
):
    sign_up(mail_client, interests=["Cooper"])
    before = int(time.time())
    drain(mail_app)
    [request] = webhook_receiver.wait_for(1)
    headers = {key.lower(): value for key, value in request["headers"].items()}
    webhook_row = next(row for row in outbox(mail_session) if row.kind == "dealer_webhook")

    assert request["path"] == "/hook"
    assert headers["content-type"] == "application/json"
    assert headers["x-leadsvc-event"] == "lead.created"
    assert headers["x-leadsvc-delivery"] == f"outbox-{webhook_row.id}"
    assert before - 1 <= int(headers["x-leadsvc-timestamp"]) <= time.time() + 1
    assert headers["x-leadsvc-signature"].startswith("sha256=")
    assert verify_signature(request)
    assert not verify_signature(request, secret="another-dealers-secret-000000")
    assert not verify_signature({**request, "body": request["body"].replace(b"Jane", b"Joan")})
    document = json.loads(request["body"])
    assert document["event"] == "lead.created"
    assert document["dealer"] == {"code": "NY1", "name": "MINI NY1"}
    lead = document["lead"]
    assert (lead["first_name"], lead["email"], lead["zip"], lead["interests"]) == (
        "Jane",
        "jane.doe@example.com",
        "10001",
        ["Cooper"],
    )
    assert webhook_row.status == "sent"


@pytest.mark.parametrize("answer", [500, 404, 302], ids=["server-error", "not-found", "redirect"])
def test_any_answer_but_2xx_fails_the_try_and_is_retried(
    mail_app, mail_client, mail_session, webhook_dealer, webhook_receiver, answer
):
    webhook_receiver.statuses = [answer]
    sign_up(mail_client)
    drain(mail_app)
    row = next(row for row in outbox(mail_session) if row.kind == "dealer_webhook")
    assert (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        f"DeliveryError: webhook answered {answer}",
    )
    assert row.next_attempt_at is not None
    assert attempts(mail_session, row.id) == [(1, "failed")]

    mail_session.execute(sa.text("UPDATE outbox SET next_attempt_at = NULL"))  # the retry is due
    mail_session.commit()
    drain(mail_app)
    assert len(webhook_receiver.wait_for(2)) == 2
    assert attempts(mail_session, row.id) == [(1, "failed"), (2, "sent")]
    assert [r.status for r in outbox(mail_session) if r.kind == "dealer_webhook"] == ["sent"]


def test_a_webhook_timeout_fails_the_try_and_is_retried(
    mail_app, mail_client, mail_session, webhook_dealer, webhook_receiver
):
    webhook_receiver.delay = 1.5  # WEBHOOK_TIMEOUT is 1 s in these tests
    sign_up(mail_client)
    drain(mail_app)
    row = next(row for row in outbox(mail_session) if row.kind == "dealer_webhook")
    assert (row.status, row.last_error) == (
        "pending",
        "DeliveryError: webhook unreachable: TimeoutError",
    )


def test_a_batch_of_webhooks_shares_one_connection_and_a_refusal_stays_its_own(
    mail_app, mail_client, mail_session, webhook_dealer, webhook_receiver
):
    """One job's webhooks to a dealer's server go over one kept-alive connection; an answer
    that fails one of them (500) fails that row alone, and the others arrive once each."""
    for n in range(4):
        sign_up(mail_client, email=f"person{n}@example.com")
    ids = [row.id for row in outbox(mail_session) if row.kind == "dealer_webhook"]
    webhook_receiver.statuses = [200, 500]
    outcomes, errors = deliver_batch(mail_app, ids, runner="batch")
    assert [outcomes[i] for i in ids] == ["sent", "failed", "sent", "sent"]
    assert list(errors) == [ids[1]]
    requests = webhook_receiver.wait_for(4)
    assert [r["headers"]["X-Leadsvc-Delivery"] for r in requests] == [f"outbox-{i}" for i in ids]
    assert len({r["peer"] for r in requests}) == 1
    statuses = {row.id: row.status for row in outbox(mail_session)}
    assert [statuses[i] for i in ids] == ["sent", "pending", "sent", "sent"]
