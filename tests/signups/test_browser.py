"""The form page in a real browser (Debian's Chromium via Playwright), with and without JavaScript.

With JavaScript, signup.js posts JSON to /api/v1/signups and shows the reply inline; without it,
the form posts to /signup and the server renders the same messages. Every page is served under a
strict Content-Security-Policy (added on the way to the browser, as a later deployment will), and
any console error or CSP violation fails the test. Runs on both databases through `live_server`.

Screenshots of the error and thank-you states go to /tmp/leadsvc-shots/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.signups.abuse import bot_reason
from tests.conftest import TEST_SECRET_KEY

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright
except ImportError as error:  # pragma: no cover - the dev extra installs playwright
    sync_playwright = None
    PLAYWRIGHT_IMPORT_ERROR = error

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("LEADSVC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path("/tmp/leadsvc-shots")
TIMEOUT_MS = 5_000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

RECEIVED = "We've received your information, so keep an eye out for communications from MINI USA."
REQUIRED = "This is a required field."
INVALID_EMAIL = "Please enter a valid email address."
INVALID_ZIP = "Please enter a valid Zip code."
EMPTY_FORM_MESSAGES = {
    "first_name": REQUIRED,
    "last_name": REQUIRED,
    "email": INVALID_EMAIL,
    "zip": INVALID_ZIP,
}
CONSENT_NOTICE = (
    "After we receive your information it may be used by MINI USA and your MINI Dealer "
    "to contact you."
)
#: Chromium logs every 4xx/5xx response as a console error; those replies are expected here.
_HTTP_STATUS_LOG = re.compile(r"^Failed to load resource: the server responded with a status")


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module. Not launchable: fail in CI, skip with the reason elsewhere."""
    problem = None
    if sync_playwright is None:
        problem = f"playwright is not installed: {PLAYWRIGHT_IMPORT_ERROR}"
    else:
        playwright = sync_playwright().start()
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000
            )
        except PlaywrightError as error:
            playwright.stop()
            problem = f"Chromium at {CHROMIUM} cannot be launched: {error}"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    yield chromium
    chromium.close()
    playwright.stop()


def _open_page(browser, live_server, *, javascript: bool):
    """A fresh context and page; documents get the CSP header; errors are collected."""
    context = browser.new_context(base_url=live_server, java_script_enabled=javascript)
    context.set_default_timeout(TIMEOUT_MS)

    def with_csp(route):
        if route.request.resource_type != "document":
            route.continue_()
            return
        response = route.fetch()
        route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": CSP}
        )

    context.route("**/*", with_csp)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message):
        if message.type == "error" and not _HTTP_STATUS_LOG.match(message.text):
            errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return context, page, errors


@pytest.fixture
def page(browser, live_server):
    """A JavaScript-enabled page of its own; fails on any console error or CSP violation."""
    context, page, errors = _open_page(browser, live_server, javascript=True)
    page.browser_errors = errors
    yield page
    context.close()
    assert errors == [], "the browser reported errors"


@pytest.fixture
def nojs_page(browser, live_server):
    """A page with JavaScript disabled: the form posts to /signup."""
    context, page, errors = _open_page(browser, live_server, javascript=False)
    yield page
    context.close()
    assert errors == [], "the browser reported errors"


@pytest.fixture
def api_requests(page):
    """URLs of the requests the page sends to the API."""
    seen: list[str] = []
    page.on("request", lambda request: "/api/" in request.url and seen.append(request.url))
    return seen


def screenshot(page, request, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}-{request.node.callspec.id}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def fill(page, first_name="Jane", last_name="Doe", email="jane.doe@example.com", zip="10001"):
    page.get_by_label("First Name").fill(first_name)
    page.get_by_label("Last Name").fill(last_name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Zip Code").fill(zip)


def mark_document(page) -> None:
    """Tag the loaded document; the tag survives only if the page does not navigate."""
    page.evaluate("window.__sameDocument = true")


def still_same_document(page) -> bool:
    return page.evaluate("window.__sameDocument === true")


def count(session, model) -> int:
    session.rollback()  # see what the server committed since the last look
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def expect_field_errors(page, messages: dict[str, str]) -> None:
    for name, message in messages.items():
        expect(page.locator(f"#error-{name}")).to_have_text(message)
        control = page.locator(f"#{name}")
        if message:
            expect(control).to_have_attribute("aria-invalid", "true")
            expect(page.locator(f".field:has(#{name})")).to_have_class(re.compile(r"\binvalid\b"))
        else:
            expect(control).not_to_have_attribute("aria-invalid", re.compile(".*"))
            expect(page.locator(f".field:has(#{name})")).not_to_have_class(
                re.compile(r"\binvalid\b")
            )


def expect_message_under_its_field(page, name: str) -> None:
    """The message sits below its input, inside the field, and left-aligned with it."""
    control = page.locator(f"#{name}").bounding_box()
    message = page.locator(f"#error-{name}").bounding_box()
    wrapper = page.locator(f".field:has(#{name})").bounding_box()
    assert message["y"] >= control["y"] + control["height"] - 1, name
    assert abs(message["x"] - control["x"]) <= 2, name
    assert message["height"] > 0, name
    assert message["y"] + message["height"] <= wrapper["y"] + wrapper["height"] + 1, name


# --- with JavaScript ------------------------------------------------------------------------


def test_js_signup_shows_the_thank_you_inline_without_leaving_the_page(
    page, live_server, session, api_requests
):
    page.goto("/?utm_source=newsletter&utm_campaign=spring")
    expect(page.locator("#consent-notice")).to_have_text(CONSENT_NOTICE)
    mark_document(page)
    fill(page, zip="10001-1234")

    with page.expect_response("**/api/v1/signups") as reply:
        page.get_by_role("button", name="Submit").click()

    sent = reply.value.request
    assert (sent.method, sent.headers["content-type"]) == ("POST", "application/json")
    posted = dict(sent.post_data_json)
    # The anti-bot fields: the signed render time, and the honeypot a person leaves empty.
    assert posted.pop("website") == ""
    assert (
        bot_reason(
            TEST_SECRET_KEY, "", posted.pop("form_token"), min_seconds=0, token_required=True
        )
        is None
    )
    assert posted == {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane.doe@example.com",
        "zip": "10001-1234",
        "consent_text_version": 1,
        "source": f"{live_server}/",
        "utm": {"utm_source": "newsletter", "utm_campaign": "spring"},
    }
    assert reply.value.status == 202
    thanks = page.locator("#thanks")
    expect(thanks).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank You.")
    expect(page.locator("#thanks-message")).to_have_text(RECEIVED)
    expect(page.locator("#thanks-suggestion")).to_be_hidden()
    expect(page.locator("#signup")).to_be_hidden()
    expect(thanks).to_be_focused()
    assert page.url == f"{live_server}/?utm_source=newsletter&utm_campaign=spring"
    assert still_same_document(page)
    assert api_requests == [f"{live_server}/api/v1/signups"]

    session.rollback()
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.email, lead.zip5, lead.zip4, lead.source, lead.consent_text_version) == (
        "jane.doe@example.com",
        "10001",
        "1234",
        f"{live_server}/",
        1,
    )
    assert lead.utm == {"utm_source": "newsletter", "utm_campaign": "spring"}
    event = session.scalars(sa.select(ConsentEvent)).one()
    assert (event.lead_id, event.event_type, event.text_version, event.source_url) == (
        lead.id,
        "given",
        1,
        f"{live_server}/",
    )
    assert "Chrome" in event.user_agent


def test_js_empty_form_shows_the_three_messages_under_the_fields(
    page, live_server, session, request
):
    page.goto("/")
    mark_document(page)

    with page.expect_response("**/api/v1/signups") as reply:
        page.get_by_role("button", name="Submit").click()

    assert reply.value.status == 422
    expect_field_errors(page, EMPTY_FORM_MESSAGES)
    for name in EMPTY_FORM_MESSAGES:
        expect_message_under_its_field(page, name)
    expect(page.locator("#first_name")).to_be_focused()
    expect(page.locator("#form-failure")).to_have_text("")
    expect(page.locator("#thanks")).to_be_hidden()
    expect(page.get_by_role("button", name="Submit")).to_be_enabled()
    assert page.url == f"{live_server}/"
    assert still_same_document(page)
    screenshot(page, request, "form-errors-js")
    assert count(session, Lead) == count(session, ConsentEvent) == 0

    # Fixing some fields clears their messages and keeps the others.
    fill(page, first_name="Jane", last_name="Doe", email="jane.doe@", zip="")
    with page.expect_response("**/api/v1/signups"):
        page.get_by_role("button", name="Submit").click()
    expect_field_errors(
        page,
        {"first_name": "", "last_name": "", "email": INVALID_EMAIL, "zip": INVALID_ZIP},
    )
    expect(page.locator("#email")).to_be_focused()
    assert still_same_document(page)
    assert count(session, Lead) == 0


def test_js_mistyped_provider_gets_a_did_you_mean_hint(page, session, request):
    page.goto("/")
    fill(page, email="jane@gmial.com")

    with page.expect_response("**/api/v1/signups") as reply:
        page.get_by_role("button", name="Submit").click()

    assert reply.value.status == 202
    expect(page.locator("#thanks")).to_be_visible()
    expect(page.locator("#thanks-message")).to_have_text(RECEIVED)
    hint = page.locator("#thanks-suggestion")
    expect(hint).to_be_visible()
    expect(hint).to_have_text(
        "Did you mean jane@gmail.com? If so, please sign up again with that address."
    )
    expect(hint.get_by_role("link", name="sign up again")).to_have_attribute("href", "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank You.")
    screenshot(page, request, "thanks-js")
    session.rollback()
    assert session.scalars(sa.select(Lead.email)).one() == "jane@gmial.com"


def test_js_shows_the_failure_message_when_the_server_fails(page, session):
    page.goto("/")
    page.route(
        "**/api/v1/signups",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"code": 503, "status": "Service Unavailable", "message": "Try later."}',
        ),
    )
    fill(page)
    page.get_by_role("button", name="Submit").click()

    expect(page.locator("#form-failure")).to_have_text("Try later.")
    expect(page.locator("#thanks")).to_be_hidden()
    expect(page.get_by_role("button", name="Submit")).to_be_enabled()
    assert count(session, Lead) == 0


def test_js_asks_for_a_reload_when_the_consent_text_version_is_unknown(page, session):
    page.goto("/")
    page.locator("input[name=consent_text_version]").evaluate("input => input.value = '99'")
    fill(page)

    with page.expect_response("**/api/v1/signups") as reply:
        page.get_by_role("button", name="Submit").click()

    assert reply.value.status == 422
    expect(page.locator("#form-failure")).to_have_text("Please reload the page and try again.")
    expect(page.locator("#thanks")).to_be_hidden()
    expect_field_errors(page, dict.fromkeys(EMPTY_FORM_MESSAGES, ""))
    assert count(session, Lead) == 0


def test_the_page_runs_under_a_strict_content_security_policy(page):
    response = page.goto("/")

    assert response.headers["content-security-policy"] == CSP
    # The policy is enforced: an inline style is refused...
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(
            "document.body.insertAdjacentHTML("
            "'beforeend', '<p id=probe style=\"color: red\">x</p>')"
        )
    color = page.evaluate("getComputedStyle(document.getElementById('probe')).color")
    assert color != "rgb(255, 0, 0)"
    page.browser_errors.clear()
    # ... yet the page's own script and style work: the script runs, the stylesheet applies.
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#error-zip")).to_have_text(INVALID_ZIP)
    expect(page.locator("#error-zip")).to_have_css("color", "rgb(176, 0, 32)")
    expect(page.locator("#thanks")).to_be_hidden()  # `[hidden]` from the stylesheet


# --- without JavaScript -----------------------------------------------------------------------


def test_nojs_signup_posts_the_form_and_shows_the_thank_you_page(
    nojs_page, live_server, session, request
):
    page = nojs_page
    api = []
    page.on("request", lambda r: "/api/" in r.url and api.append(r.url))
    page.goto("/?utm_source=newsletter")
    fill(page, email="jane@gmial.com")

    with page.expect_navigation(url=f"{live_server}/signup") as navigation:
        page.get_by_role("button", name="Submit").click()

    response = navigation.value
    assert (response.status, response.request.method) == (200, "POST")
    assert "application/x-www-form-urlencoded" in response.request.headers["content-type"]
    expect(page).to_have_title("Thank You | MINI USA")
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank You.")
    expect(page.locator("#thanks-message")).to_have_text(RECEIVED)
    expect(page.locator("#thanks-suggestion")).to_have_text(
        "Did you mean jane@gmail.com? If so, please sign up again with that address."
    )
    expect(page.get_by_role("link", name="sign up again")).to_have_attribute("href", "/")
    assert api == []
    screenshot(page, request, "thanks-nojs")

    session.rollback()
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.email, lead.source, lead.utm) == (
        "jane@gmial.com",
        f"{live_server}/",
        {"utm_source": "newsletter"},
    )
    assert session.scalars(sa.select(ConsentEvent.lead_id)).one() == lead.id


def test_nojs_empty_form_shows_the_three_messages_on_the_page_again(
    nojs_page, live_server, session, request
):
    page = nojs_page
    page.goto("/")

    with page.expect_navigation(url=f"{live_server}/signup") as navigation:
        page.get_by_role("button", name="Submit").click()

    assert navigation.value.status == 422
    expect_field_errors(page, EMPTY_FORM_MESSAGES)
    for name in EMPTY_FORM_MESSAGES:
        expect_message_under_its_field(page, name)
    expect(page.locator("#consent-notice")).to_have_text(CONSENT_NOTICE)
    expect(page.locator("#thanks")).to_be_hidden()
    screenshot(page, request, "form-errors-nojs")
    assert count(session, Lead) == count(session, ConsentEvent) == 0


def test_nojs_errors_keep_what_was_typed_as_text(nojs_page, live_server, session):
    page = nojs_page
    page.goto("/")
    typed = {
        "first_name": '"><script>alert(1)</script>',
        "last_name": "O'Brien & Sons",
        "email": "jane.doe@example.com",
        "zip": "1000",
    }
    fill(page, **typed)

    with page.expect_navigation(url=f"{live_server}/signup"):
        page.get_by_role("button", name="Submit").click()

    expect_field_errors(
        page,
        {
            "first_name": "Please enter a valid first name.",
            "last_name": "",
            "email": "",
            "zip": INVALID_ZIP,
        },
    )
    for name, value in typed.items():
        expect(page.locator(f"#{name}")).to_have_value(value)
    expect(page.locator("script")).to_have_count(1)  # only signup.js

    # Correcting the mistakes and sending again signs up.
    fill(page, first_name="Jane", last_name=typed["last_name"], zip="10001")
    with page.expect_navigation(url=f"{live_server}/signup"):
        page.get_by_role("button", name="Submit").click()
    expect(page.locator("#thanks-message")).to_have_text(RECEIVED)
    session.rollback()
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.last_name) == ("Jane", "O'Brien & Sons")
