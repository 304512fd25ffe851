"""Routing: nearest active dealer by great-circle distance, territory overrides, fixed ties."""

import math

import pytest
import sqlalchemy as sa

from leadsvc.dealers import routing
from leadsvc.dealers.directory import assign_territories, deactivate_dealer, import_dealers
from leadsvc.dealers.models import RoutingVersion, ZipRoute
from leadsvc.geo.directory import ZipDirectory
from tests.factories import dealer_csv, dealer_line

# ZIP centres as stored in the directory (from the zipcodes package).
NYC_10001 = (40.7484, -73.9967)
BEVERLY_HILLS_90210 = (34.0901, -118.4065)
CHICAGO_60601 = (41.8858, -87.6181)

DEALERS = dealer_csv(
    dealer_line("NY1", "10019", latitude=40.7656, longitude=-73.9885),  # Midtown Manhattan
    dealer_line("LA1", "90036", state="CA", latitude=34.0700, longitude=-118.3500),
    dealer_line("IL1", "60654", state="IL", latitude=41.8920, longitude=-87.6370),
)


def hand_haversine_km(a, b) -> float:
    """The textbook formula, written out independently of the code under test."""
    r = 6371.0088
    phi1, phi2 = math.radians(a[0]), math.radians(b[0])
    dphi, dlmb = math.radians(b[0] - a[0]), math.radians(b[1] - a[1])
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


@pytest.fixture
def dealers(session):
    report = import_dealers(session, DEALERS)
    assert report.applied and report.count("created") == 3
    return report


def route_of(session, zip5):
    session.expire_all()  # the rebuild writes routes with COPY/executemany, not through the ORM
    return session.get(ZipRoute, zip5)


@pytest.mark.parametrize(
    ("zip5", "centre", "code", "dealer_at"),
    [
        ("10001", NYC_10001, "NY1", (40.7656, -73.9885)),
        ("90210", BEVERLY_HILLS_90210, "LA1", (34.0700, -118.3500)),
        ("60601", CHICAGO_60601, "IL1", (41.8920, -87.6370)),
    ],
)
def test_nearest_dealer_and_distance_match_hand_computation(
    app, session, dealers, zip5, centre, code, dealer_at
):
    expected_km = hand_haversine_km(centre, dealer_at)
    stored = route_of(session, zip5)
    table = routing.routing_table(app, force_check=True)
    route = table.route_for_zip(zip5)
    assert route.dealer_code == code and route.reason == "nearest"
    assert stored.distance_km == pytest.approx(expected_km, abs=0.01)
    assert stored.distance_miles == pytest.approx(expected_km / 1.609344, abs=0.01)
    assert route.distance_km == stored.distance_km


def test_every_zip_with_a_centre_is_routed_and_military_zips_are_not(session, dealers):
    assert dealers.routes.routed_zips > 41_000
    assert route_of(session, "09001") is None  # APO: a real ZIP with no map position
    assert route_of(session, "99501").distance_km > 3000  # Anchorage is far from all three


def test_ties_go_to_the_lowest_dealer_code(session):
    same_place = {"latitude": 39.0, "longitude": -95.0}
    lines = [dealer_line(code, **same_place) for code in ("ZZ9", "AA1", "MM5")]
    import_dealers(session, dealer_csv(*lines))
    codes = (
        session.execute(
            sa.text("SELECT DISTINCT d.code FROM zip_routes r JOIN dealers d ON d.id = r.dealer_id")
        )
        .scalars()
        .all()
    )
    assert codes == ["AA1"]


def test_territory_override_wins_while_its_dealer_is_active(app, session, dealers):
    report = assign_territories(session, "zip,dealer_code\n10001,LA1\n")
    assert report.applied and report.count("assigned") == 1
    route = route_of(session, "10001")
    assert (route.reason, route.distance_km) == (
        "territory",
        pytest.approx(hand_haversine_km(NYC_10001, (34.07, -118.35)), abs=0.01),
    )
    assert route_of(session, "10002").reason == "nearest"  # only the assigned ZIP moves
    deactivate_dealer(session, "LA1")
    route = route_of(session, "10001")
    assert route.reason == "nearest"
    assert routing.routing_table(app, force_check=True).route_for_zip("10001").dealer_code == "NY1"


def test_each_change_is_a_new_version_the_app_notices_without_restart(
    app, session, dealers, monkeypatch
):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    before = routing.routing_table(app)
    assert before.route_for_zip("10001").dealer_code == "NY1"
    deactivate_dealer(session, "NY1")
    after = routing.routing_table(app)
    assert after.version == before.version + 1
    assert after.route_for_zip("10001").dealer_code != "NY1"
    versions = session.scalars(sa.select(RoutingVersion.version).order_by(RoutingVersion.version))
    assert list(versions) == [1, 2]


def test_no_active_dealer_means_no_routes(session, dealers):
    for code in ("NY1", "LA1", "IL1"):
        deactivate_dealer(session, code)
    assert session.scalar(sa.select(sa.func.count()).select_from(ZipRoute)) == 0


def test_demo_directory_routes_new_york_to_the_new_york_demo_dealer(session):
    from leadsvc.release import DEMO_DEALERS

    report = import_dealers(session, DEMO_DEALERS.read_text())
    assert report.applied and not report.rejected and report.count("created") >= 50
    table = routing.RoutingTable.from_database(session, ZipDirectory.from_database(session))
    assert table.route_for_zip("10001").dealer_code == "DEMONYC"
    assert table.route_for_zip("94103").dealer_code == "DEMOSFO"
    assert all("(demo)" in d for d in session.scalars(sa.text("SELECT name FROM dealers")))


def test_preloading_keeps_the_table_and_no_connection(app, session, dealers):
    """What gunicorn's master runs before forking: the table is loaded and stays the app's; the
    connection used is closed, not kept in the master's pool."""
    from leadsvc.extensions import db

    table = routing.preload_routing(app)
    assert table.route_for_zip("10001").dealer_code == "NY1"
    assert routing.routing_table(app) is table
    assert db.engine(app).pool.checkedin() == 0
