"""The confirm and unsubscribe links: GET changes nothing, POST acts, bad tokens get a clear page.

One-click unsubscribe is posted the way mail providers post it (RFC 8058): over real HTTP, no
cookies, `List-Unsubscribe=One-Click` form-encoded or as multipart/form-data.
"""

import http.client
import time
import uuid
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.outbound.tokens import LinkTokens, link_tokens
from tests.factories import valid_signup
from tests.jobs.support import kinds_and_statuses

NOT_VALID = "link is not valid"


@pytest.fixture
def person(client, session):
    """A subscribed lead with its welcome email still pending."""
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    return session.scalars(sa.select(Lead)).one()


@pytest.fixture
def tokens(app) -> LinkTokens:
    return link_tokens(app.config["LEADSVC_SETTINGS"])


def state(session, lead_id: int) -> tuple[str, list[str]]:
    session.rollback()
    lead = session.get(Lead, lead_id)
    events = session.scalars(
        sa.select(ConsentEvent.event_type)
        .where(ConsentEvent.lead_id == lead_id)
        .order_by(ConsentEvent.id)
    ).all()
    return lead.consent_status, list(events)


def post_like_a_mail_provider(base_url: str, path: str, *, multipart: bool):
    """What Gmail and others send for one-click: a bare POST, no cookies, no Referer."""
    if multipart:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            f"One-Click\r\n--{boundary}--\r\n"
        ).encode()
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body = b"List-Unsubscribe=One-Click"
        content_type = "application/x-www-form-urlencoded"
    host = urlsplit(base_url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    connection.request(
        "POST",
        path,
        body=body,
        headers={
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "User-Agent": "Mozilla/5.0 (compatible; GoogleImageProxy)",
        },
    )
    return connection.getresponse()


def test_get_unsubscribe_shows_a_button_and_changes_nothing(client, session, person, tokens):
    reply = client.get(f"/unsubscribe/{tokens.unsubscribe_token(person.id)}")
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert '<form method="post"' in page and "<button" in page and "Unsubscribe" in page
    assert state(session, person.id) == ("given", ["given"])
    assert "Set-Cookie" not in reply.headers


@pytest.mark.parametrize("multipart", [False, True], ids=["form-encoded", "multipart"])
def test_one_click_unsubscribe_as_mail_providers_post_it(
    live_server, session, person, tokens, multipart
):
    path = f"/unsubscribe/{tokens.unsubscribe_token(person.id)}"
    reply = post_like_a_mail_provider(live_server, path, multipart=multipart)
    reply.read()
    assert reply.status == 200  # not a redirect: providers do not follow one
    assert reply.getheader("Location") is None and reply.getheader("Set-Cookie") is None
    assert state(session, person.id) == ("withdrawn", ["given", "withdrawn"])
    lead = session.get(Lead, person.id)
    assert lead.unsubscribed_at is not None
    assert kinds_and_statuses(session) == [("welcome_email", "skipped")]  # suppressed at once

    again = post_like_a_mail_provider(live_server, path, multipart=multipart)
    again.read()
    assert again.status == 200
    assert state(session, person.id) == ("withdrawn", ["given", "withdrawn"])  # one event only


def test_the_unsubscribe_page_button_unsubscribes(client, session, person, tokens):
    path = f"/unsubscribe/{tokens.unsubscribe_token(person.id)}"
    reply = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert reply.status_code == 200 and "You're unsubscribed" in reply.get_data(as_text=True)
    event = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    assert (event.event_type, event.subject, event.ip) == ("withdrawn", person.email, "127.0.0.1")


def tampered(token: str) -> str:
    payload, timestamp, signature = token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{payload}.{timestamp}.{flipped}{signature[1:]}"


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("action", ["unsubscribe", "confirm"])
def test_a_bad_or_tampered_token_gets_a_clear_page(client, session, person, tokens, method, action):
    makers = [tokens.unsubscribe_token, tokens.confirm_token]
    make_good, make_other = makers if action == "unsubscribe" else makers[::-1]
    good, other = make_good(person.id), make_other(person.id)
    for token in (tampered(good), other, "not-a-token", "x" * 300, good[:-4]):
        reply = getattr(client, method)(f"/{action}/{token}")
        page = reply.get_data(as_text=True)
        assert reply.status_code == 400, token
        assert NOT_VALID in page and "Traceback" not in page
    assert state(session, person.id) == ("given", ["given"])


def test_an_expired_confirm_link_says_so(client, session, person, app, monkeypatch):
    tokens = link_tokens(app.config["LEADSVC_SETTINGS"])
    eight_days_ago = time.time() - 8 * 86_400
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: eight_days_ago)
        token = tokens.confirm_token(person.id)
    for method in ("get", "post"):
        reply = getattr(client, method)(f"/confirm/{token}")
        assert reply.status_code == 410 and "has expired" in reply.get_data(as_text=True)


def test_unsubscribe_tokens_do_not_expire_and_reveal_no_address(
    client, session, person, app, monkeypatch
):
    tokens = link_tokens(app.config["LEADSVC_SETTINGS"])
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: 1.0e9)  # signed in 2001
        token = tokens.unsubscribe_token(person.id)
    assert "jane" not in token.lower() and "example" not in token.lower()
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert state(session, person.id)[0] == "withdrawn"


def test_confirm_get_changes_nothing_and_post_confirms_once(make_app, session):
    app = make_app(double_opt_in=True)
    client = app.test_client()
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    lead = session.scalars(sa.select(Lead)).one()
    path = f"/confirm/{link_tokens(app.config['LEADSVC_SETTINGS']).confirm_token(lead.id)}"

    page = client.get(path)
    assert page.status_code == 200 and '<form method="post"' in page.get_data(as_text=True)
    assert state(session, lead.id) == ("pending", ["given"])

    assert client.post(path).status_code == 200
    again = client.post(path)
    assert again.status_code == 200 and "already confirmed" in again.get_data(as_text=True)
    assert state(session, lead.id) == ("confirmed", ["given", "confirmed"])


def test_a_confirm_link_after_an_unsubscribe_confirms_nothing(make_app, session):
    app = make_app(double_opt_in=True)
    client = app.test_client()
    client.post("/api/v1/signups", json=valid_signup())
    lead = session.scalars(sa.select(Lead)).one()
    tokens = link_tokens(app.config["LEADSVC_SETTINGS"])
    client.post(f"/unsubscribe/{tokens.unsubscribe_token(lead.id)}")
    reply = client.post(f"/confirm/{tokens.confirm_token(lead.id)}")
    assert reply.status_code == 200 and "sign up again" in reply.get_data(as_text=True)
    assert state(session, lead.id) == ("withdrawn", ["given", "withdrawn"])


def test_links_of_a_lead_that_no_longer_exists(client, session, person, tokens):
    session.execute(sa.delete(Lead).where(Lead.id == person.id))
    session.commit()
    assert client.post(f"/unsubscribe/{tokens.unsubscribe_token(person.id)}").status_code == 200
    reply = client.post(f"/confirm/{tokens.confirm_token(person.id)}")
    assert reply.status_code == 400 and NOT_VALID in reply.get_data(as_text=True)
