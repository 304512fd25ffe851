"""Telling people from bots: the honeypot field (`website`, hidden by CSS) and the minimum fill
time (the signed render time `form_token`), on the form and on the JSON API.

A bot gets the very reply a person gets, and nothing is stored or sent: no lead, no consent
event, no outbox row (the outbox is the only way an email or a dealer notification leaves).
Runs on both databases (the variants of one case on SQLite); the minimum fill time is on (2 s,
the default) unless a test says.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from leadsvc.signups.abuse import bot_reason, form_token
from tests.conftest import TEST_SECRET_KEY
from tests.factories import valid_signup

URL = "/api/v1/signups"
RECEIVED = "We've received your information, so keep an eye out for communications from MINI USA."
STYLE = Path(__file__).resolve().parents[2] / "leadsvc" / "static" / "style.css"
only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def guarded(make_app):
    """An app with the default minimum fill time (rate limits stay off: bots are the subject)."""
    return make_app(min_fill_seconds=2)


def stored(session) -> tuple[int, int, int]:
    session.rollback()
    count = sa.select(sa.func.count())
    return tuple(
        session.scalar(count.select_from(model)) for model in (Lead, ConsentEvent, OutboxMessage)
    )


def aged_token(seconds: float = 60) -> str:
    """The render time of a page the person opened `seconds` ago."""
    return form_token(TEST_SECRET_KEY, now=time.time() - seconds)


def form_data(**overrides) -> dict:
    data = {
        **valid_signup(),
        "consent_text_version": "1",
        "form_token": aged_token(),
        "website": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def thanks_text(response) -> str:
    """The thank-you page's words, markup and whitespace aside."""
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = re.search(r"<main.*</main>", response.text, re.S).group(0)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


# --- the honeypot ---------------------------------------------------------------------------------


@only_sqlite
@pytest.mark.parametrize("honeypot", ["http://spam.example", "x", " "])
def test_a_filled_honeypot_on_the_form_gets_a_persons_thanks_and_nothing_is_stored(
    guarded, session, honeypot
):
    client = guarded.test_client()

    person = client.post("/signup", data=form_data(email="person@example.com"))
    assert stored(session) == (1, 1, 1)
    bot = client.post("/signup", data=form_data(website=honeypot))

    assert thanks_text(bot) == thanks_text(person)
    assert RECEIVED.replace("'", "&#39;") in bot.text
    assert stored(session) == (1, 1, 1)


def test_a_filled_honeypot_on_the_api_gets_a_persons_202_and_nothing_is_stored(guarded, session):
    client = guarded.test_client()

    person = client.post(URL, json=valid_signup(email="person@example.com", website=""))
    bot = client.post(URL, json=valid_signup(website="http://spam.example"))

    assert (bot.status_code, bot.get_json()) == (person.status_code, person.get_json())
    assert bot.get_json() == {"status": "received", "message": RECEIVED}
    assert bot.headers["Content-Type"] == person.headers["Content-Type"]
    assert stored(session) == (1, 1, 1)  # only the person


def test_a_bot_using_a_known_persons_address_changes_nothing_of_theirs(guarded, session):
    client = guarded.test_client()
    assert client.post("/signup", data=form_data()).status_code == 200
    session.rollback()
    before = session.scalars(sa.select(Lead)).one()
    before_values = (before.first_name, before.last_name, before.signup_count, before.updated_at)

    client.post("/signup", data=form_data(first_name="Spam", website="x"))
    client.post(URL, json=valid_signup(first_name="Spam", website="x"))
    client.post("/signup", data=form_data(first_name="Spam", form_token=aged_token(0)))

    session.rollback()
    session.expire_all()
    after = session.scalars(sa.select(Lead)).one()
    assert (
        after.first_name,
        after.last_name,
        after.signup_count,
        after.updated_at,
    ) == before_values
    assert stored(session) == (1, 1, 1)


def test_the_honeypot_is_hidden_by_css_and_kept_from_people(guarded, session):
    page = guarded.test_client().get("/").text

    block = re.search(r'<div class="hp" aria-hidden="true">(.*?)</div>', page, re.S)
    assert block, "the honeypot sits in a .hp block hidden from screen readers"
    field = re.search(r"<input [^>]*name=\"website\"[^>]*>", block.group(1)).group(0)
    assert 'tabindex="-1"' in field and 'autocomplete="off"' in field and 'value=""' in field
    assert 'type="hidden"' not in field  # a bot sees an ordinary text field
    rule = re.search(r"\.hp\s*\{([^}]*)\}", STYLE.read_text()).group(1)
    assert "position: absolute" in rule and "left: -10000px" in rule and "overflow: hidden" in rule


# --- the minimum fill time ------------------------------------------------------------------------


@only_sqlite
@pytest.mark.parametrize("age", [0, 0.5, 1.9])
def test_a_form_sent_back_faster_than_a_person_types_is_refused_silently(guarded, session, age):
    client = guarded.test_client()

    response = client.post("/signup", data=form_data(form_token=aged_token(age)))

    assert RECEIVED.replace("'", "&#39;") in response.text
    assert response.status_code == 200
    assert stored(session) == (0, 0, 0)


def test_the_api_refuses_a_fast_token_but_accepts_callers_without_one(guarded, session):
    """The page's own script sends the token; other API callers are held by the rate limits."""
    client = guarded.test_client()

    fast = client.post(URL, json=valid_signup(form_token=aged_token(0.2)))
    assert (fast.status_code, fast.get_json()) == (202, {"status": "received", "message": RECEIVED})
    assert stored(session) == (0, 0, 0)

    slow = client.post(URL, json=valid_signup(form_token=aged_token(5), website=""))
    assert slow.status_code == 202
    assert stored(session) == (1, 1, 1)
    assert client.post(URL, json=valid_signup(email="other@example.com")).status_code == 202
    assert stored(session) == (2, 2, 2)


@only_sqlite
@pytest.mark.parametrize(
    "token",
    [
        None,  # a bot posting the form without ever loading the page
        "",
        "not-a-token",
        form_token("another-secret-key-" + "y" * 32, now=time.time() - 60),  # forged
        aged_token()[:-2] + "xx",  # tampered signature
    ],
    ids=["missing", "empty", "garbage", "other-key", "tampered"],
)
def test_the_form_without_a_genuine_render_time_is_refused_silently(guarded, session, token):
    client = guarded.test_client()

    data = form_data()
    data.pop("form_token")
    if token is not None:
        data["form_token"] = token
    response = client.post("/signup", data=data)

    assert RECEIVED.replace("'", "&#39;") in response.text
    assert stored(session) == (0, 0, 0)


@only_sqlite
@pytest.mark.parametrize(
    "token",
    ["not-a-token", form_token("another-secret-key-" + "y" * 32)],
    ids=["garbage", "other-key"],
)
def test_the_api_with_a_bad_token_is_refused_silently(guarded, session, token):
    response = guarded.test_client().post(URL, json=valid_signup(form_token=token))

    assert (response.status_code, response.get_json()["status"]) == (202, "received")
    assert stored(session) == (0, 0, 0)


def test_the_pages_own_render_time_holds_a_fast_submit_and_passes_a_person(make_app, session):
    client = make_app(min_fill_seconds=0.5).test_client()

    token = re.search(r'name="form_token" value="([^"]+)"', client.get("/").text).group(1)
    client.post("/signup", data=form_data(form_token=token))  # at once: a script
    assert stored(session) == (0, 0, 0)

    time.sleep(0.6)  # a (very fast) person
    assert client.post("/signup", data=form_data(form_token=token)).status_code == 200
    assert stored(session) == (1, 1, 1)


def test_bot_reason_names_each_case():
    now = time.time()
    token = form_token(TEST_SECRET_KEY, now=now - 10)
    check = {"min_seconds": 2, "now": now}

    assert bot_reason(TEST_SECRET_KEY, "", token, token_required=True, **check) is None
    assert bot_reason(TEST_SECRET_KEY, "x", token, token_required=True, **check) == "honeypot"
    assert bot_reason(TEST_SECRET_KEY, None, None, token_required=True, **check) == "bad_token"
    assert bot_reason(TEST_SECRET_KEY, None, None, token_required=False, **check) is None
    assert (
        bot_reason(TEST_SECRET_KEY, None, token, token_required=False, min_seconds=11, now=now)
        == "too_fast"
    )
    assert (
        bot_reason("other-key-" + "z" * 32, None, token, token_required=True, **check)
        == "bad_token"
    )


def test_a_refused_bot_is_logged_by_reason_without_the_address(guarded, session, caplog):
    client = guarded.test_client()
    caplog.set_level(logging.INFO)

    client.post("/signup", data=form_data(website="x"))
    client.post("/signup", data=form_data(form_token=aged_token(0)))
    client.post(URL, json=valid_signup(form_token="nope"))

    refusals = [r for r in caplog.records if r.getMessage() == "signup refused as a bot"]
    assert [r.reason for r in refusals] == ["honeypot", "too_fast", "bad_token"]
    assert not any("jane" in r.getMessage().lower() for r in caplog.records)


@only_sqlite
def test_only_the_person_is_ever_emailed(make_app, session, smtp):
    """End to end: every outbox row delivered over real SMTP; bots and limited tries send none."""
    from leadsvc.jobs.tasks import run_delivery

    app = make_app(
        min_fill_seconds=2,
        smtp_url=smtp.url,
        rate_limits_enabled=True,
        signup_limit_per_ip="100/minute",
        signup_limit_per_email="1/hour",
    )
    client = app.test_client()
    assert client.post("/signup", data=form_data(email="person@example.com")).status_code == 200
    client.post("/signup", data=form_data(email="bot1@example.com", website="x"))
    client.post("/signup", data=form_data(email="bot2@example.com", form_token=aged_token(0)))
    client.post(URL, json=valid_signup(email="bot3@example.com", website="x"))
    limited = client.post(URL, json=valid_signup(email="person@example.com"))
    assert limited.status_code == 429

    session.rollback()
    for outbox_id in session.scalars(sa.select(OutboxMessage.id)).all():
        assert run_delivery(app, outbox_id) == "sent"
    recipients = [message["To"] for message in smtp.messages()]
    assert recipients == ["person@example.com"]
