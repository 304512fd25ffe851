"""The deletion notice reaches the dealer: by email at its lead inbox and by signed webhook."""

import json

import pytest
import sqlalchemy as sa

from leadsvc.auth.keys import create_key
from leadsvc.dealers import routing
from leadsvc.outbound.dealer_notice import webhook_signature
from leadsvc.outbox.models import OutboxMessage
from tests.factories import valid_signup
from tests.jobs.support import FAST, WEBHOOK_SECRET, add_dealer, drain


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


def test_erasure_notice_is_delivered_to_the_dealer(make_app, session, smtp, webhook_receiver):
    app = make_app(smtp_url=smtp.url, **FAST)
    dealer = add_dealer(session, webhook_url=webhook_receiver.url)
    client = app.test_client()
    assert client.post("/api/v1/signups", json=valid_signup(zip="10001")).status_code == 202
    drain(app)  # welcome email, ADF email and webhook go out
    assert len(smtp.wait_for(2)) == 2 and len(webhook_receiver.wait_for(1)) == 1
    lead_id = session.scalar(sa.select(OutboxMessage.lead_id))
    key = create_key(session, "compliance")[1]

    reply = client.post(
        "/api/v1/consent/erasures",
        json={"email": "jane.doe@example.com"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert reply.status_code == 200 and reply.get_json()["dealers_notified"] == [dealer.code]
    drain(app)

    notice = smtp.wait_for(3)[2]
    assert notice["To"].endswith(f"<{dealer.lead_email}>")
    assert notice["Subject"].startswith(f"Deletion request for lead {lead_id} from MINI USA")
    body = notice.get_content()
    assert f"delete every copy of lead {lead_id}" in body and "jane" not in body.lower()
    hook = webhook_receiver.wait_for(2)[1]
    headers = {k.lower(): v for k, v in hook["headers"].items()}
    assert headers["x-leadsvc-event"] == "lead.erased"
    signed = webhook_signature(WEBHOOK_SECRET, headers["x-leadsvc-timestamp"], hook["body"])
    assert headers["x-leadsvc-signature"] == signed
    assert json.loads(hook["body"])["lead"] == {"id": lead_id, "consent": "erased"}
    statuses = dict(session.execute(sa.select(OutboxMessage.kind, OutboxMessage.status)).all())
    notices = (statuses["dealer_erasure_email"], statuses["dealer_erasure_webhook"])
    assert notices == ("sent", "sent")
