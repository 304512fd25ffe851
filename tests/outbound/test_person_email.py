"""The emails to the person, as they arrive at a real SMTP server (both databases)."""

import re
from email.utils import parseaddr

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.outbound.tokens import link_tokens
from tests.factories import valid_signup
from tests.jobs.support import PUBLIC_BASE_URL, drain, kinds_and_statuses, parts

#: Names nobody else uses, so the tests can prove the emails never repeat them.
TYPED = {"first_name": "Zebulon", "last_name": "Quartermaine"}
POSTAL = "MINI USA, 300 Chestnut Ridge Road, Woodcliff Lake, NJ 07677"
LIST_UNSUBSCRIBE = re.compile(
    r"^<(https://stay\.example\.com/unsubscribe/([A-Za-z0-9_.-]+))>, "
    r"<mailto:unsubscribe@newsletter\.example\.com\?subject=unsubscribe%20([A-Za-z0-9_.-]+)>$"
)


def signup(client, **fields):
    reply = client.post("/api/v1/signups", json=valid_signup(**TYPED, **fields))
    assert reply.status_code == 202, reply.get_json()
    return reply


def lead(session, email="jane.doe@example.com") -> Lead:
    session.rollback()
    return session.scalars(sa.select(Lead).where(Lead.email_key == email)).one()


def assert_list_headers(app, message, lead_id: int) -> str:
    """The RFC 8058 and RFC 2919 headers; returns the unsubscribe URL."""
    match = LIST_UNSUBSCRIBE.match(message["List-Unsubscribe"])
    assert match, message["List-Unsubscribe"]
    url, token, mailto_token = match.groups()
    assert token == mailto_token
    assert "jane" not in token.lower() and "@" not in token
    assert link_tokens(app.config["LEADSVC_SETTINGS"]).unsubscribe_lead_id(token) == lead_id
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == (
        '"MINI USA Stay In the Loop" <stay-in-the-loop.newsletter.example.com>'
    )
    return url


def test_single_opt_in_sends_a_welcome_email_with_unsubscribe_headers(
    mail_app, mail_client, mail_session, smtp, dealer
):
    signup(mail_client)
    assert drain(mail_app) == 2  # the welcome email and the dealer's ADF email
    messages = smtp.wait_for(2)
    [welcome] = [m for m in messages if m["To"] == "jane.doe@example.com"]
    person = lead(mail_session)

    assert welcome["Subject"] == "Welcome to MINI USA Stay In the Loop"
    assert parseaddr(welcome["From"])[1] == "stay-in-the-loop@newsletter.example.com"
    message_id = welcome["Message-ID"]
    assert re.fullmatch(
        r"<outbox-\d+\.welcome-email\.[0-9a-f]{32}@newsletter\.example\.com>", message_id
    )
    assert welcome["Date"]
    url = assert_list_headers(mail_app, welcome, person.id)
    assert welcome.get_content_type() == "multipart/alternative"
    bodies = parts(welcome)
    assert set(bodies) == {"text/plain", "text/html"}
    for body in bodies.values():
        assert POSTAL in body  # the brand's postal address
        assert url in body  # a visible unsubscribe link
        assert "MINI NY1" in body  # the dealer's name: ours, not typed
        for typed in TYPED.values():
            assert typed not in body
    assert f'<a href="{url}"' in bodies["text/html"]
    assert "Zebulon" not in welcome.as_string() and "Quartermaine" not in welcome.as_string()
    [raw] = [data for _, to, data in smtp.received if to == ["jane.doe@example.com"]]
    # On the wire too: one plain line, as mail providers' one-click parsers read it.
    assert f"\r\nList-Unsubscribe: <{url}>, <mailto:".encode() in raw
    assert kinds_and_statuses(mail_session) == [("welcome_email", "sent"), ("dealer_email", "sent")]


def test_double_opt_in_confirms_first_and_tells_the_dealer_only_after(
    make_app, smtp, session, dealer
):
    from tests.jobs.support import FAST

    app = make_app(smtp_url=smtp.url, double_opt_in=True, **FAST)
    client = app.test_client()
    signup(client)
    drain(app)
    [confirmation] = smtp.wait_for(1)
    person = lead(session)
    assert person.consent_status == "pending"
    assert kinds_and_statuses(session) == [("confirm_email", "sent")]  # no dealer notice yet
    assert confirmation["Subject"] == "Please confirm your MINI USA Stay In the Loop signup"
    assert_list_headers(app, confirmation, person.id)
    bodies = parts(confirmation)
    link = re.search(r"https://stay\.example\.com/confirm/[A-Za-z0-9_.-]+", bodies["text/plain"])
    assert link and link.group(0) in bodies["text/html"]
    for body in bodies.values():
        assert POSTAL in body
        assert "Zebulon" not in body and "Quartermaine" not in body and "MINI NY1" not in body

    path = link.group(0).removeprefix(PUBLIC_BASE_URL)
    assert client.get(path).status_code == 200
    assert lead(session).consent_status == "pending"  # a GET (a mail scanner) changes nothing
    page = client.post(path, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert page.status_code == 200 and "your signup is confirmed" in page.get_data(as_text=True)
    confirmed = lead(session)
    assert confirmed.consent_status == "confirmed" and confirmed.confirmed_at is not None
    event = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    assert (event.event_type, event.lead_id, event.ip) == ("confirmed", person.id, "198.51.100.7")
    assert event.occurred_at >= confirmed.created_at

    drain(app)
    later = smtp.wait_for(3)[1:]
    assert sorted(m["To"] for m in later) == [
        "MINI NY1 <leads-ny1@example.com>",
        "jane.doe@example.com",
    ]
    assert kinds_and_statuses(session) == [
        ("confirm_email", "sent"),
        ("welcome_email", "sent"),
        ("dealer_email", "sent"),
    ]


def test_repeat_signups_of_an_unconfirmed_address_resend_the_confirmation_three_times_a_day(
    make_app, smtp, session
):
    from tests.jobs.support import FAST

    app = make_app(smtp_url=smtp.url, double_opt_in=True, **FAST)
    client = app.test_client()
    for _ in range(5):
        signup(client)
    drain(app)
    assert len(smtp.wait_for(3)) == 3
    # The other two are written as held back (the day's three were sent), never sent.
    assert (
        kinds_and_statuses(session)
        == [("confirm_email", "sent")] * 3 + [("confirm_email", "skipped")] * 2
    )
    assert lead(session).signup_count == 5


def test_a_repeat_signup_of_a_subscribed_address_sends_nothing_new(
    mail_app, mail_client, mail_session, smtp, dealer
):
    signup(mail_client)
    signup(mail_client, zip="10019")
    drain(mail_app)
    smtp.wait_for(2)
    # The second signup's rows are written as held back (see signups.service), never sent.
    assert kinds_and_statuses(mail_session) == [
        ("welcome_email", "sent"),
        ("dealer_email", "sent"),
        ("welcome_email", "skipped"),
        ("dealer_email", "skipped"),
    ]
    assert len(smtp.received) == 2


@pytest.mark.parametrize("double_opt_in", [False, True])
def test_a_signup_from_an_unsubscribed_address_must_confirm_again(
    make_app, smtp, session, dealer, double_opt_in
):
    from tests.jobs.support import FAST

    app = make_app(smtp_url=smtp.url, double_opt_in=double_opt_in, **FAST)
    client = app.test_client()
    signup(client)
    person = lead(session)
    session.execute(sa.update(Lead).values(consent_status="confirmed"))
    session.commit()
    token = link_tokens(app.config["LEADSVC_SETTINGS"]).unsubscribe_token(person.id)
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    drain(app)
    assert smtp.received == []  # the welcome and dealer emails were suppressed
    before = kinds_and_statuses(session)
    assert before and {status for _, status in before} == {"skipped"}

    signup(client)
    assert lead(session).consent_status == "pending"
    drain(app)
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Please confirm your MINI USA Stay In the Loop signup"
    # a confirmation only: no welcome, no dealer notice until the person confirms
    assert kinds_and_statuses(session) == [*before, ("confirm_email", "sent")]
