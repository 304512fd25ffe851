"""The admin's dealer path in Chromium: sign in, create a dealer, find it in the list, open the
coverage map and highlight a dealer's area; under the app's CSP with no browser error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from leadsvc.dealers.directory import import_dealers
from tests.console.conftest import sign_up
from tests.console.test_browser import console_page, sign_in, sign_out  # noqa: F401  (fixture)
from tests.factories import dealer_csv, dealer_line
from tests.signups.test_browser import browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MORE_DEALERS = (
    ("CHI1", "60601", "IL"),
    ("HOU1", "77002", "TX"),
    ("DEN1", "80202", "CO"),
    ("SEA1", "98101", "WA"),
    ("ATL1", "30303", "GA"),
    ("ANC1", "99501", "AK"),
)


def _shoot(page, path, name: str) -> list:
    shots = []
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        shot = path / f"{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        shots.append(shot)
    return shots


def test_admin_creates_a_dealer_and_sees_it_on_the_map(
    console_page,  # noqa: F811
    client,
    console_db,
    accounts,
    tmp_path,
):
    with console_db() as session:
        lines = [dealer_line(code, zip5, state=state) for code, zip5, state in MORE_DEALERS]
        assert import_dealers(session, dealer_csv(*lines)).applied
    army = sign_up(client, console_db, "army@example.com", "09001")  # no dealer takes it
    for n in range(2):
        sign_up(client, console_db, f"brooklyn{n}@example.com", "11201")  # NY1's, for now
    page = console_page
    sign_in(page, accounts["admin"])
    page.get_by_role("link", name="Dealers", exact=True).click()
    page.get_by_role("link", name="New dealer").click()
    page.get_by_label("Code", exact=True).fill("BK1")
    page.get_by_label("Name", exact=True).fill("MINI of Brooklyn")
    page.get_by_label("Street", exact=True).fill("1 Atlantic Ave")
    page.get_by_label("City", exact=True).fill("Brooklyn")
    page.get_by_label("State", exact=True).fill("NY")
    page.get_by_label("ZIP code").fill("1120")  # one digit short: refused in the import's words
    page.get_by_label("Phone", exact=True).fill("(718) 555-0100")
    page.get_by_label("Lead inbox (email)").fill("leads@bk.example.com")
    page.get_by_label("Response target (business hours)").fill("8")
    page.get_by_role("button", name="Create dealer").click()
    expect(page.get_by_text("ZIP '1120' is not a US ZIP code")).to_be_visible()
    shots = _shoot(page, tmp_path, "dealer-form-error")
    page.get_by_label("ZIP code").fill("11201")
    page.get_by_role("button", name="Create dealer").click()
    expect(page.get_by_text("Dealer BK1 is created.")).to_be_visible()
    page.get_by_role("link", name="Show all").click()
    row = page.locator("tr#dealer-BK1")
    expect(row).to_contain_text("MINI of Brooklyn")
    expect(row).to_contain_text("active")
    expect(page.get_by_role("heading", name="9 dealers")).to_be_visible()
    shots += _shoot(page, tmp_path, "dealers")

    page.set_default_timeout(20_000)  # the map's first drawing, on a machine shared by many
    page.get_by_role("link", name="Coverage map").click()
    expect(page.get_by_role("heading", name="Coverage map")).to_be_visible()
    expect(page.get_by_role("img", name="Coverage map")).to_be_visible()
    page.locator(".legend").get_by_role("link", name="BK1").click()
    assert page.evaluate("document.querySelector('#area-BK1').matches(':target')")
    dimmed = page.evaluate("getComputedStyle(document.querySelector('#area-LA1')).opacity")
    assert float(dimmed) < 0.5
    shots += _shoot(page, tmp_path, "coverage")
    page.get_by_role("link", name="Show all dealers").click()
    expect(page.locator("#area-LA1")).to_have_css("opacity", "1")  # once the page is drawn
    expect(page.get_by_text("No unassigned ZIP")).to_be_visible()
    shots += _shoot(page, tmp_path, "coverage-all")
    page.get_by_role("link", name="Unassigned pool").click()
    page.get_by_label(f"Select lead {army}").check()
    page.get_by_label("Give to dealer").select_option("NY1")
    shots += _shoot(page, tmp_path, "unassigned")
    page.get_by_role("button", name="Give ticked leads to this dealer").click()
    expect(page.get_by_text("1 lead reassigned.")).to_be_visible()
    expect(page.get_by_text("The unassigned pool is empty")).to_be_visible()

    page.get_by_role("link", name="Dealers", exact=True).click()
    page.get_by_role("link", name="Deactivate NY1").click()
    expect(page.locator("#moving")).to_contain_text("3 leads")  # the two and the soldier's
    moving = page.get_by_role("row").filter(has_text="BK1 MINI of Brooklyn")
    expect(moving.get_by_role("cell").last).to_have_text("2")
    back_to_pool = page.get_by_role("row").filter(has_text="the unassigned pool")
    expect(back_to_pool.get_by_role("cell").last).to_have_text("1")
    shots += _shoot(page, tmp_path, "deactivate")
    page.get_by_role("button", name="Deactivate NY1").click()
    expect(page.get_by_text("Dealer NY1 is deactivated; 3 leads moved.")).to_be_visible()

    page.get_by_role("link", name="Import dealers").click()
    bad = dealer_csv(dealer_line("SF1", "94103", state="CA"), dealer_line("XX", "00000"))
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "dealers.csv", "mimeType": "text/csv", "buffer": bad.encode()}]
    )
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_text("Nothing was changed: 1 row refused.")).to_be_visible()
    expect(page.get_by_role("cell", name="ZIP '00000' is not a US ZIP code")).to_be_visible()
    shots += _shoot(page, tmp_path, "upload-report")
    sign_out(page)
    assert all(shot.stat().st_size > 10_000 for shot in shots)
