"""The whole path on a live server: the form posted over HTTP, the welcome email received by a
real SMTP server, a DSN built for it (its VERP envelope sender and Message-ID), ingested; the
dealer then sees the lead bounced in its feed and its ADF, and nothing more goes to the address.
"""

import csv
import io
import re
import threading
import urllib.parse
import urllib.request
from email.utils import parseaddr

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from leadsvc.auth.keys import create_key
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.dealers.conftest import settle
from tests.deliverability.support import BOUNCE_DOMAIN, Sent, bounce_app, ingest
from tests.jobs.support import add_dealer, drain, parts, validate_adf

EMAIL = "jane.doe@example.com"
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


@pytest.fixture
def served(make_app, smtp, session, monkeypatch):
    """The app (mail to `smtp`, VERP envelopes, one dealer) on a real HTTP server."""
    from leadsvc.dealers import routing

    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    app = bounce_app(make_app, smtp, min_fill_seconds=0)
    add_dealer(session)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def _http(url: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, reply.read().decode()


def _post_the_form(base: str) -> str:
    """What a browser without JavaScript does: load the page, fill it in, submit it."""
    _, page = _http(base + "/")
    hidden = dict(_HIDDEN.findall(page))
    assert {"form_token", "consent_text_version"} <= set(hidden)
    fields = {"first_name": "Jane", "last_name": "Doe", "email": EMAIL, "zip": "10001"}
    status, thanks = _http(base + "/signup", {**hidden, **fields})
    assert status == 200 and "keep an eye out for communications" in thanks
    return thanks


def _feed(base: str, key: str, accept: str) -> str:
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    return _http(base + "/api/v1/dealer/leads?only_new=false", headers=headers)[1]


def test_a_bounced_welcome_email_marks_the_lead_bounced_and_stops_all_mail(
    served, smtp, session, tmp_path
):
    app, base = served
    key = create_key(session, "dealer", "NY1")[1]
    _post_the_form(base)
    drain(app)
    smtp.wait_for(2)  # the welcome email and the dealer's ADF email
    [(envelope, recipients, _)] = [m for m in smtp.received if m[1] == [EMAIL]]
    [welcome] = [m for m in smtp.messages() if parseaddr(str(m["To"]))[1] == EMAIL]
    assert envelope.startswith("bounces+") and envelope.endswith("@" + BOUNCE_DOMAIN)
    lead_id = session.scalars(sa.select(Lead.id)).one()
    settle(app)  # the feed serves a lead once no older transaction can still commit
    sent = Sent(lead_id, envelope, recipients[0], str(welcome["Message-ID"]))
    assert re.search(r'"email_status":\s*"ok"', _feed(base, key, "application/json"))

    output = ingest(app, tmp_path, sent.notification("postfix_hard.eml"))
    assert "recorded 1" in output and "hard 1" in output

    feed = _feed(base, key, "application/json")
    assert re.search(r'"email_status":\s*"bounced"', feed)
    [header, row] = list(csv.reader(io.StringIO(_feed(base, key, "text/csv"))))
    assert dict(zip(header, row, strict=True))["email_status"] == "bounced"
    adf = _feed(base, key, "application/xml")
    root = validate_adf(adf)
    assert root.findtext(".//customer/contact/email") == EMAIL
    assert root.find(".//customer/contact/email").get("preferredcontact") == "0"
    assert "Email status: bounced" in adf

    # The person asks for everything to stop and then signs up again: the confirmation that
    # signup needs is held back, as the address is known to bounce; nothing reaches it.
    preferences = re.search(r"https?://\S+?(/preferences/\S+)", parts(welcome)["text/plain"])[1]
    _http(base + preferences, {"action": "unsubscribe"})
    _post_the_form(base)
    drain(app)
    session.rollback()
    last = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
    assert (last.kind, last.status) == ("confirm_email", "skipped")
    assert [m[1] for m in smtp.received].count([EMAIL]) == 1  # the welcome email only
