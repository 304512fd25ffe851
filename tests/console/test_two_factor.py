"""The TOTP second factor: set-up, the code step of signing in, no replay, the limits on wrong
codes, REQUIRE_2FA, and `leadsvc users reset-2fa`."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
import sqlalchemy as sa

from leadsvc.auth.models import StaffAudit, StaffSignInFailure, StaffUser
from leadsvc.auth.users import MAX_FAILURES_PER_ACCOUNT
from leadsvc.console.views_two_factor import LIMITED, WRONG_CODE
from tests.console.conftest import csrf_token, post_form, sign_in

SET_UP = "/console/account/two-step"


def code(secret: str, steps_ahead: int = 0) -> str:
    """The code of the current time step (or one ahead: still inside the accepted drift)."""
    return pyotp.TOTP(secret).at(time.time(), counter_offset=steps_ahead)


def enrol(client) -> str:
    """Set up the second factor of the signed-in account; returns its secret."""
    page = client.get(SET_UP)
    assert page.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    reply = client.post(SET_UP, data={"code": code(secret), "csrf_token": csrf_token(page.text)})
    assert reply.status_code == 303, reply.text
    return secret


def sign_out(client) -> None:
    page = client.get(SET_UP)
    client.post("/console/logout", data={"csrf_token": csrf_token(page.text)})


def send_code(client, value: str):
    return post_form(client, "/console/login/code", {"code": value})


@pytest.fixture(autouse=True)
def away_from_a_step_edge():
    """Codes of "this step" and "the next" must mean the same steps for the whole test."""
    if 30 - time.time() % 30 < 3:
        time.sleep(3.1)


def test_enrolment_shows_the_secret_and_its_uri_and_needs_a_right_code(
    client, console_db, accounts
):
    sign_in(client, accounts["ny"])
    page = client.get(SET_UP)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    assert "otpauth://totp/" in page.text and f"secret={secret}" in page.text
    assert 'src="data:image/svg+xml' in page.text  # the QR code, drawn offline
    assert client.get(SET_UP).text.count(secret) >= 1  # the same secret until confirmed
    wrong = post_form(client, SET_UP, {"code": "000000" if code(secret) != "000000" else "111111"})
    assert wrong.status_code == 422 and WRONG_CODE in wrong.text
    with console_db() as session:
        user = session.scalar(sa.select(StaffUser).where(StaffUser.email == accounts["ny"]))
        assert user.totp_secret is None and user.totp_pending_secret == secret
    right = post_form(client, SET_UP, {"code": code(secret)})
    assert right.status_code == 303
    assert "Two-step sign-in is on" in client.get(right.headers["Location"]).text
    with console_db() as session:
        user = session.scalar(sa.select(StaffUser).where(StaffUser.email == accounts["ny"]))
        assert user.totp_secret == secret and user.totp_pending_secret is None
        actions = list(session.scalars(sa.select(StaffAudit.action)))
    assert "user.enrol_2fa" in actions


def test_sign_in_asks_for_the_code_and_a_code_is_taken_once(client, accounts):
    sign_in(client, accounts["admin"])
    secret = enrol(client)
    sign_out(client)
    first = sign_in(client, accounts["admin"])
    assert first.status_code == 303 and first.headers["Location"].endswith("/console/login/code")
    assert client.get("/console/overview").status_code == 303  # not signed in yet
    replayed = send_code(client, code(secret))  # the code that confirmed the set-up
    assert replayed.status_code == 422 and WRONG_CODE in replayed.text
    accepted = send_code(client, code(secret, 1))
    assert accepted.status_code == 303
    assert client.get("/console/overview").status_code == 200
    sign_out(client)
    sign_in(client, accounts["admin"])
    again = send_code(client, code(secret, 1))
    assert again.status_code == 422 and WRONG_CODE in again.text


def test_the_code_step_needs_the_password_step_first(client, accounts):
    assert client.get("/console/login/code").status_code == 303
    reply = client.post("/console/login/code", data={"code": "123456"})
    assert reply.status_code in (303, 400)
    assert client.get("/console/overview").status_code == 303


def test_wrong_codes_are_limited_like_passwords(client, console_db, accounts):
    sign_in(client, accounts["compliance"])
    secret = enrol(client)
    sign_out(client)
    sign_in(client, accounts["compliance"])
    wrong = "000000" if code(secret, 1) != "000000" else "111111"
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        assert send_code(client, wrong).status_code == 422
    limited = send_code(client, code(secret, 1))
    assert limited.status_code == 422 and LIMITED in limited.text
    assert client.get("/console/people").status_code == 303
    with console_db() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(StaffSignInFailure)) == 5


def test_require_2fa_holds_admins_at_the_set_up_page(make_app, accounts):
    client = make_app(require_2fa=True).test_client()
    reply = sign_in(client, accounts["admin"])
    assert reply.status_code == 303 and reply.headers["Location"].endswith(SET_UP)
    for path in ("/console/overview", "/console/audit", "/console/"):
        held = client.get(path)
        assert held.status_code == 303 and held.headers["Location"].endswith(SET_UP), path
    page = client.get(SET_UP)
    assert "must use two-step sign-in" in page.text
    assert 'href="/console/overview"' not in page.text  # no way elsewhere in the navigation
    enrol(client)
    assert client.get("/console/overview").status_code == 200
    # A dealer account is not held back.
    dealer = make_app(require_2fa=True).test_client()
    sign_in(dealer, accounts["ny"])
    assert dealer.get("/console/leads").status_code == 200


def test_reset_2fa_removes_the_factor_ends_sessions_and_is_audited(
    app, client, console_db, accounts
):
    sign_in(client, accounts["admin"])
    enrol(client)
    runner = app.test_cli_runner()
    done = runner.invoke(args=["users", "reset-2fa", accounts["admin"]])
    assert done.exit_code == 0, done.output
    assert client.get("/console/overview").status_code == 303  # the session ended
    assert sign_in(client, accounts["admin"]).headers["Location"].endswith("/console/")
    missing = runner.invoke(args=["users", "reset-2fa", "nobody@example.com"])
    assert missing.exit_code == 1 and "no account" in missing.output
    with console_db() as session:
        user = session.scalar(sa.select(StaffUser).where(StaffUser.email == accounts["admin"]))
        assert user.totp_secret is None and user.totp_last_step is None
        rows = session.execute(sa.select(StaffAudit.action, StaffAudit.actor)).all()
    assert ("user.reset_2fa", "cli") in [tuple(row) for row in rows]
