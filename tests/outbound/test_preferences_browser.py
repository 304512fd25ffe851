"""The preferences page in Chromium without JavaScript, under the site's strict CSP: the person
unticks a choice, saves, sees it kept; unsubscribes; the link then says it is no longer valid."""

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.outbound.preferences import CHOICES, UNSUBSCRIBE_LABEL
from leadsvc.outbound.tokens import link_tokens
from tests.factories import valid_signup
from tests.signups.test_browser import _open_page, browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_person_changes_their_preferences_and_unsubscribes_in_a_browser(
    browser,  # noqa: F811
    live_server,
    app,
    client,
    session,
):
    assert client.post("/api/v1/signups", json=valid_signup(interests=["Cooper S"])).status_code
    lead_id = session.scalars(sa.select(Lead.id)).one()
    token = link_tokens(app.config["LEADSVC_SETTINGS"]).preferences_token(lead_id, 1)
    context, page, errors = _open_page(browser, live_server, javascript=False)
    try:
        page.goto(f"/preferences/{token}")
        emails = page.get_by_label(CHOICES["newsletter"])
        expect(emails).to_be_checked()
        expect(page.get_by_label(CHOICES["dealer_contact"])).to_be_checked()
        expect(page.get_by_label("Cooper S")).to_be_checked()
        emails.uncheck()
        page.get_by_role("button", name="Save my preferences").click()
        expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
        expect(page.get_by_label(CHOICES["newsletter"])).not_to_be_checked()

        page.get_by_role("button", name=UNSUBSCRIBE_LABEL).click()
        expect(page.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
        page.goto(f"/preferences/{token}")
        expect(page.get_by_role("alert")).to_contain_text("no longer valid")
    finally:
        context.close()
    assert errors == []
    session.rollback()
    types = session.scalars(
        sa.select(ConsentEvent.event_type).where(ConsentEvent.lead_id == lead_id)
    ).all()
    assert list(types) == ["given", "newsletter_off", "withdrawn"]
