"""The coverage map: every ZIP centre drawn, coloured by dealer, unassigned ZIPs visible, one
link per dealer to its area; redrawn when the routing changes, kept while it does not."""

from __future__ import annotations

import dataclasses
import re

import pytest

from leadsvc.console import views_coverage
from leadsvc.console.coverage_map import REGIONS, Projection, albers, dealer_colour
from tests.console.conftest import post_form, sign_in


@pytest.fixture
def settings(settings):
    # Beyond 1,500 km from both test dealers (New York, Los Angeles) ZIPs are unassigned.
    return dataclasses.replace(settings, route_max_km=1500.0)


def _without_token(page: str) -> str:
    """The page without its CSRF token (signed with the time: it changes every second)."""
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', page)


def _area(svg: str, code: str) -> str:
    match = re.search(
        rf'<path id="area-{code}" class="area[^"]*" fill="(#[0-9a-f]{{6}})" d="([^"]*)"', svg
    )
    assert match, f"no area for {code}"
    return match.group(2)


@pytest.fixture
def drawings(monkeypatch) -> list:
    """Each coverage the page had drawn."""
    drawn, real = [], views_coverage.draw
    monkeypatch.setattr(views_coverage, "draw", lambda data: drawn.append(data) or real(data))
    return drawn


def test_map_colours_zips_by_dealer_and_shows_the_unassigned(client, accounts, drawings):
    sign_in(client, accounts["admin"])
    page = client.get("/console/coverage")
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg viewBox") : page.text.index("</svg>")]
    for code in ("NY1", "LA1", "unassigned"):
        assert _area(svg, code).startswith("M")
    # NY1's area lies east of LA1's on the map.
    ny_x = [int(x) for x in re.findall(r"M(\d+) ", _area(svg, "NY1"))]
    la_x = [int(x) for x in re.findall(r"M(\d+) ", _area(svg, "LA1"))]
    assert min(ny_x) > max(la_x)
    assert svg.count('class="pin"') == 2 and 'href="#area-NY1"' in svg
    assert 'href="#area-LA1">LA1</a>' in page.text  # the list beside the map
    assert re.search(r"\d+ unassigned ZIPs", page.text)
    assert "<script" not in page.text and "style=" not in page.text
    assert len(page.data) < 600_000
    assert len(drawings) == 1 and len(drawings[0].zips) > 30_000  # every ZIP with a centre
    again = client.get("/console/coverage")
    assert _without_token(again.text) == _without_token(page.text)
    assert len(drawings) == 1  # kept, not drawn again


def test_map_is_redrawn_when_a_dealer_is_deactivated(client, accounts, drawings):
    sign_in(client, accounts["admin"])
    before = client.get("/console/coverage").text
    assert 'id="area-LA1"' in before
    post_form(client, "/console/dealers/LA1/deactivate", {})
    after = client.get("/console/coverage").text
    assert 'id="area-LA1"' not in after and "LA1 MINI LA1 (inactive)" in after
    assert len(drawings) == 2


def test_projection_fits_each_region_in_its_box():
    points = [("lower48", 49.0, -124.7), ("lower48", 25.0, -80.0), ("lower48", 47.0, -67.0)]
    points += [("alaska", 71.3, -156.8), ("alaska", 55.3, -131.6), ("hawaii", 21.3, -157.8)]
    project = Projection((r, *albers(REGIONS[r], lat, lon)) for r, lat, lon in points)
    for region, lat, lon in points:
        x, y = project(region, lat, lon)
        left, top, right, bottom = REGIONS[region].box
        assert left - 0.01 <= x <= right + 0.01 and top - 0.01 <= y <= bottom + 0.01
    seattle, miami = project("lower48", 49.0, -124.7), project("lower48", 25.0, -80.0)
    assert seattle[0] < miami[0] and seattle[1] < miami[1]  # west is left, north is up
    assert albers(REGIONS["lower48"], 37.5, -96.0) == pytest.approx((0.0, 0.0))
    assert len({dealer_colour(i) for i in range(40)}) == 40
