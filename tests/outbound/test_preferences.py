"""The person's preferences page: what they get, changed by them, each change a consent event
with the words the page showed; GET changes nothing; an older email's link cannot change a
later signup's choices."""

import re

import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.consent.subjects import erase_subject
from leadsvc.leads.models import Lead
from leadsvc.outbound import preferences as prefs
from leadsvc.outbound.tokens import link_tokens
from leadsvc.outbox.models import OutboxMessage
from leadsvc.request_context import ConsentContext
from tests.factories import valid_signup
from tests.jobs.support import FAST, drain, parts

STALE = "no longer valid"


def _preferences_path(message) -> str:
    text = parts(message)["text/plain"]
    html = parts(message)["text/html"]
    path = re.search(r"https?://\S+?(/preferences/[A-Za-z0-9._-]+)", text)[1]
    assert path in html
    return path


def _events(session, lead_id: int) -> list[tuple[str, str | None]]:
    session.rollback()
    return [
        (event.event_type, event.source_url)
        for event in session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.lead_id == lead_id).order_by(ConsentEvent.id)
        )
    ]


def _lead(session, lead_id: int) -> Lead:
    session.rollback()
    return session.get(Lead, lead_id)


def _sign_up(app, session, **fields) -> int:
    reply = app.test_client().post("/api/v1/signups", json=valid_signup(**fields))
    assert reply.status_code == 202
    session.rollback()
    return session.scalars(sa.select(Lead.id)).one()


def test_the_welcome_emails_link_shows_the_choices_and_a_change_is_a_consent_event(
    mail_app, mail_client, mail_session, smtp
):
    lead_id = _sign_up(mail_app, mail_session, interests=["Countryman", "Cooper S"])
    drain(mail_app)
    path = _preferences_path(smtp.wait_for(1)[0])
    before = _events(mail_session, lead_id)

    page = mail_client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert prefs.CHOICES["newsletter"] in html and prefs.CHOICES["dealer_contact"] in html
    assert html.count("checked") == 4  # both choices and both interests
    assert _events(mail_session, lead_id) == before  # GET changes nothing

    form = {"action": "save", "dealer_contact": "on", "interest": "Cooper S"}
    reply = mail_client.post(path, data=form)
    assert reply.status_code == 200 and "Your preferences are saved" in reply.get_data(True)
    assert _events(mail_session, lead_id)[len(before) :] == [
        ("newsletter_off", f"preferences:{prefs.CHOICES['newsletter']}"),
        ("interests", f"preferences:{prefs.INTERESTS_LABEL}: Cooper S"),
    ]
    lead = _lead(mail_session, lead_id)
    assert (lead.newsletter, lead.dealer_contact, lead.interests) == (False, True, ["Cooper S"])
    assert lead.consent_status == "given"

    again = mail_client.post(path, data=form)
    assert "Nothing changed" in again.get_data(as_text=True)
    assert len(_events(mail_session, lead_id)) == len(before) + 2


def test_both_choices_off_is_an_unsubscribe(mail_app, mail_client, mail_session, smtp):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    reply = mail_client.post(f"/preferences/{token}", data={"action": "save"})
    assert reply.status_code == 200 and "unsubscribed" in reply.get_data(as_text=True)
    assert _lead(mail_session, lead_id).consent_status == "withdrawn"
    assert _events(mail_session, lead_id)[-1] == (
        "withdrawn",
        f"preferences:{prefs.UNSUBSCRIBE_LABEL}",
    )


def test_dealer_contact_off_withholds_the_lead_from_the_dealer_and_on_tells_it_again(
    mail_app, mail_client, mail_session, smtp, dealer
):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    path = f"/preferences/{token}"
    assert mail_client.post(path, data={"newsletter": "on"}).status_code == 200

    def rows():
        mail_session.rollback()
        query = sa.select(OutboxMessage.kind, OutboxMessage.status).order_by(OutboxMessage.id)
        return [tuple(row) for row in mail_session.execute(query)]

    assert ("dealer_email", "skipped") in rows() and ("welcome_email", "pending") in rows()
    drain(mail_app)
    delivered = smtp.wait_for(1)
    assert [m["Subject"] for m in delivered] == ["Welcome to MINI USA Stay In the Loop"]

    mail_client.post(path, data={"newsletter": "on", "dealer_contact": "on"})
    assert _events(mail_session, lead_id)[-2:] == [
        ("dealer_off", f"preferences:{prefs.CHOICES['dealer_contact']}"),
        ("dealer_on", f"preferences:{prefs.CHOICES['dealer_contact']}"),
    ]
    assert rows().count(("dealer_email", "pending")) == 1  # the dealer is told now
    drain(mail_app)
    assert "New lead" in smtp.wait_for(2)[1]["Subject"]


def test_newsletter_off_before_the_welcome_went_out_skips_it(
    mail_app, mail_client, mail_session, smtp
):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    mail_client.post(f"/preferences/{token}", data={"dealer_contact": "on"})
    drain(mail_app)
    mail_session.rollback()
    row = mail_session.scalars(sa.select(OutboxMessage)).one()
    assert (row.kind, row.status) == ("welcome_email", "skipped")
    assert smtp.received == []


def test_unsubscribe_from_everything_is_an_unsubscribe(mail_app, mail_client, mail_session, smtp):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    form = {"action": "unsubscribe", "newsletter": "on", "dealer_contact": "on"}
    reply = mail_client.post(f"/preferences/{token}", data=form)
    assert reply.status_code == 200 and "unsubscribed" in reply.get_data(as_text=True)
    lead = _lead(mail_session, lead_id)
    assert lead.consent_status == "withdrawn" and lead.unsubscribed_at is not None
    assert _events(mail_session, lead_id)[-1] == (
        "withdrawn",
        f"preferences:{prefs.UNSUBSCRIBE_LABEL}",
    )
    drain(mail_app)
    assert smtp.received == []


def test_a_bad_preferences_link_gets_a_page_that_says_so(mail_client, mail_app, mail_session):
    lead_id = _sign_up(mail_app, mail_session)
    tokens = link_tokens(mail_app.config["LEADSVC_SETTINGS"])
    unsubscribe = tokens.unsubscribe_token(lead_id)  # another purpose's token
    for path in ("/preferences/nonsense", f"/preferences/{unsubscribe}"):
        for reply in (mail_client.get(path), mail_client.post(path, data={"newsletter": "on"})):
            assert reply.status_code == 400
            assert "preferences link is not valid" in reply.get_data(as_text=True)
    assert [e[0] for e in _events(mail_session, lead_id)] == ["given"]


def test_an_older_emails_preferences_link_is_stale_after_a_withdrawal_and_a_new_signup(
    make_app, smtp, session
):
    app = make_app(double_opt_in=True, smtp_url=smtp.url, **FAST)
    client = app.test_client()
    lead_id = _sign_up(app, session)
    drain(app)
    first = _preferences_path(smtp.wait_for(1)[0])
    assert client.get(first).status_code == 200  # pending: the page works

    assert client.post(first, data={"action": "unsubscribe"}).status_code == 200
    for reply in (client.get(first), client.post(first, data={"newsletter": "on"})):
        page = " ".join(reply.get_data(as_text=True).split())
        assert reply.status_code == 410 and STALE in page and "unsubscribed since" in page
    assert _lead(session, lead_id).consent_status == "withdrawn"

    client.post("/api/v1/signups", json=valid_signup())  # signs up again: pending
    drain(app)
    latest = _preferences_path(smtp.wait_for(2)[-1])
    events = _events(session, lead_id)
    for reply in (
        client.get(first),
        client.post(first, data={"dealer_contact": "on"}),
        client.post(first, data={"action": "unsubscribe"}),
    ):
        page = " ".join(reply.get_data(as_text=True).split())
        assert reply.status_code == 410 and STALE in page and "newest email" in page
    assert _events(session, lead_id) == events
    assert _lead(session, lead_id).consent_status == "pending"

    assert client.post(latest, data={"newsletter": "on"}).status_code == 200
    assert _events(session, lead_id)[-1][0] == "dealer_off"


def test_a_new_signup_turns_both_choices_on_again(mail_app, mail_client, mail_session, dealer):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    mail_client.post(f"/preferences/{token}", data={"newsletter": "on"})
    assert _lead(mail_session, lead_id).dealer_contact is False
    assert mail_client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    lead = _lead(mail_session, lead_id)
    assert (lead.newsletter, lead.dealer_contact, lead.signup_count) == (True, True, 2)
    mail_session.rollback()
    query = sa.select(OutboxMessage.status).where(OutboxMessage.kind == "dealer_email")
    assert mail_session.scalars(query.order_by(OutboxMessage.id)).all() == ["skipped", "pending"]


def test_an_erased_persons_preferences_link_changes_nothing(mail_app, mail_client, mail_session):
    lead_id = _sign_up(mail_app, mail_session)
    token = link_tokens(mail_app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    context = ConsentContext(None, None, "test", None)
    with mail_app.app_context():
        erase_subject(mail_session, valid_signup()["email"], context)
    events = _events(mail_session, lead_id)
    for reply in (
        mail_client.get(f"/preferences/{token}"),
        mail_client.post(f"/preferences/{token}", data={"newsletter": "on"}),
        mail_client.post(f"/preferences/{token}", data={"action": "unsubscribe"}),
    ):
        assert reply.status_code == 400 and "not valid" in reply.get_data(as_text=True)
    assert _events(mail_session, lead_id) == events
    assert _lead(mail_session, lead_id).consent_status == "erased"
