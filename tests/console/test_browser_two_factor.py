"""Two-step sign-in in Chromium: set up the second factor from the page's key, sign out, sign in
with the password and a code pyotp computes; and the console's own 404 page."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.console.test_browser import console_page, shoot, sign_in, sign_out  # noqa: F401
from tests.signups.test_browser import browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def fresh_code(secret: str, after: float | None = None) -> tuple[str, float]:
    """A code for now, or for the step after the one of time `after` if now is still in it (a
    step's code is taken once); returns the code and the time it is for."""
    if 30 - time.time() % 30 < 3:  # too close to the next step: wait for it
        time.sleep(3.1)
    at = time.time()
    if after is not None and int(at // 30) <= int(after // 30):
        at = (int(after // 30) + 1) * 30
    return pyotp.TOTP(secret).at(at), at


def test_sign_in_with_a_totp_code(console_page, accounts):  # noqa: F811
    page = console_page
    sign_in(page, accounts["admin"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("link", name="Two-step sign-in").click()
    expect(page.get_by_role("img", name="QR code of the set-up address below")).to_be_visible()
    shoot(page, "two-step-set-up")
    secret = page.locator("#totp-secret").inner_text()
    code, enrolled_at = fresh_code(secret)
    page.get_by_label("Six-digit code from your authenticator app").fill(code)
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_text("Two-step sign-in is on.")).to_be_visible()
    sign_out(page)

    sign_in(page, accounts["admin"])
    expect(page.get_by_role("heading", name="Sign-in code")).to_be_visible()
    page.get_by_label("Six-digit code from your authenticator app").fill("12345x")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The code is not right")
    shoot(page, "two-step-code")
    page.get_by_label("Six-digit code from your authenticator app").fill(
        fresh_code(secret, after=enrolled_at)[0]
    )
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.goto("/console/no-such-page").status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    shoot(page, "console-404")
    sign_out(page)
