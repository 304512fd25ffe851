"""Signing in and out, the limits on failed sign-ins, the session cookie, expiry, role walls."""

from __future__ import annotations

import sqlalchemy as sa

from leadsvc.auth.audit import COMMAND_LINE
from leadsvc.auth.models import StaffAudit, StaffUser
from leadsvc.auth.users import MAX_FAILURES_PER_ACCOUNT, reset_password
from leadsvc.consent.models import ConsentText
from leadsvc.console.views_auth import LIMITED, REFUSED
from tests.console.conftest import PASSWORD, csrf_token, sign_in


def test_sign_in_lands_on_the_roles_start_page_and_sign_out_ends_it(client, accounts):
    reply = sign_in(client, accounts["ny"])
    assert reply.status_code == 303
    assert reply.headers["Location"].endswith("/console/")
    page = client.get("/console/", follow_redirects=True)
    assert "for MINI NY1 (NY1)" in page.text
    cookie = reply.headers["Set-Cookie"]
    assert "leadsvc_console=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie
    out = client.post("/console/logout", data={"csrf_token": csrf_token(page.text)})
    assert out.status_code == 303
    again = client.get("/console/leads")
    assert again.status_code == 303 and "/console/login" in again.headers["Location"]


def test_the_cookie_is_secure_behind_https(make_app, accounts):
    client = make_app(public_base_url="https://leads.example.com").test_client()
    reply = sign_in(client, accounts["admin"])
    assert "Secure" in reply.headers["Set-Cookie"]


def test_the_public_form_and_api_still_set_no_cookie(client, accounts):
    assert "Set-Cookie" not in client.get("/").headers
    reply = client.post(
        "/api/v1/signups",
        json={"first_name": "A", "last_name": "B", "email": "a@example.com", "zip": "10001"},
    )
    assert reply.status_code == 202 and "Set-Cookie" not in reply.headers


def test_a_fresh_session_at_sign_in(client, accounts):
    client.get("/console/login")
    with client.session_transaction("/console/") as stored:
        stored["planted"] = "by someone else"
        old_token = stored["csrf_token"]
    sign_in(client, accounts["compliance"])
    client.get("/console/people")
    with client.session_transaction("/console/") as stored:
        assert "planted" not in stored
        assert stored["csrf_token"] != old_token


def test_unknown_account_and_wrong_password_get_the_same_message(client, accounts):
    unknown = sign_in(client, "nobody@example.com")
    wrong = sign_in(client, accounts["admin"], "not the password at all")
    assert unknown.status_code == wrong.status_code == 422
    assert REFUSED in unknown.text and REFUSED in wrong.text
    assert client.get("/console/overview").status_code == 303


def test_failed_sign_ins_are_limited_per_account(client, accounts):
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        assert REFUSED in sign_in(client, accounts["admin"], "wrong password here").text
    limited = sign_in(client, accounts["admin"])  # the right password, too late
    assert limited.status_code == 422 and LIMITED in limited.text
    assert sign_in(client, accounts["compliance"]).status_code == 303  # others still may


def test_a_password_reset_ends_open_sessions(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    assert client.get("/console/overview").status_code == 200
    with console_db() as session:
        reset_password(session, COMMAND_LINE, accounts["admin"], "another long password")
    reply = client.get("/console/overview")
    assert reply.status_code == 303 and "expired=1" in reply.headers["Location"]
    assert "Your session has expired" in client.get(reply.headers["Location"]).text


def test_an_idle_session_expires(client, accounts):
    sign_in(client, accounts["admin"])
    with client.session_transaction("/console/") as stored:
        stored["seen"] = stored["seen"] - 31 * 60
    reply = client.get("/console/overview")
    assert reply.status_code == 303 and "expired=1" in reply.headers["Location"]


def test_roles_are_walled(client, accounts):
    sign_in(client, accounts["ny"])
    for path in ("/console/overview", "/console/people", "/console/texts", "/console/audit"):
        reply = client.get(path)
        assert reply.status_code == 403, path
        assert "This page is not for your role" in reply.text
    client.post(
        "/console/logout", data={"csrf_token": csrf_token(client.get("/console/leads").text)}
    )
    sign_in(client, accounts["compliance"])
    assert client.get("/console/leads").status_code == 403


def test_every_console_page_declares_its_roles(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and rule.endpoint != "console.static":
            view = app.view_functions[rule.endpoint]
            assert getattr(view, "console_roles", None) is not None, rule.rule


def test_a_post_without_csrf_token_changes_nothing(client, console_db, accounts):
    sign_in(client, accounts["compliance"])
    reply = client.post("/console/texts", data={"text": "New text", "publish": "y"})
    assert reply.status_code == 400
    assert "This form could not be accepted" in reply.text
    with console_db() as session:
        actions = set(session.scalars(sa.select(StaffAudit.action)))
        assert "consent_text.publish" not in actions
        assert session.scalar(sa.select(sa.func.max(ConsentText.version))) == 1


def test_the_password_is_never_stored(console_db, accounts):
    with console_db() as session:
        stored = session.scalar(sa.select(StaffUser.password_hash).limit(1))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
