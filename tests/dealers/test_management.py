"""Keeping the directory by hand: search, save, the deactivation preview (it predicts exactly
what the deactivation does), reactivation, and a pooled lead routed again."""

from collections import Counter

import pytest
import sqlalchemy as sa

from leadsvc.dealers.directory import assign_territories, deactivate_dealer, import_dealers
from leadsvc.dealers.leads import reassign_lead, route_again
from leadsvc.dealers.management import (
    DealerExists,
    deactivation_preview,
    dealer_page,
    reactivate_dealer,
    save_dealer,
)
from leadsvc.dealers.models import Dealer, LeadMove, ZipRoute
from leadsvc.dealers.route_builder import compute_routes
from leadsvc.geo.models import ZipCode
from leadsvc.leads.models import Lead
from tests.dealers.test_directory import _lead
from tests.factories import DEALER_HEADER, dealer_csv, dealer_line


@pytest.fixture
def ids(session) -> dict[str, int]:
    import_dealers(
        session,
        dealer_csv(
            dealer_line("NY1"),
            dealer_line("NJ1", "07030", state="NJ"),
            dealer_line("CT1", "06901", state="CT"),
            dealer_line("LA1", "90036", state="CA"),
        ),
    )
    return dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())


def test_the_preview_predicts_the_deactivation(session, ids):
    assign_territories(session, "zip,dealer_code\n10001,NY1\n")
    for n, zip5 in enumerate(("10001", "10001", "07302", "06902", "10601", "09001")):
        _lead(session, f"p{n}@example.com", zip5, ids["NY1"])
    _lead(session, "done@example.com", "10001", ids["NY1"], acknowledged=True)
    preview = deactivation_preview(session, "ny1")
    assert preview.moving == 6
    predicted = {d.code: d.leads for d in preview.destinations}
    assert predicted[None] == 1  # the military ZIP: no dealer takes it
    assert session.scalar(sa.select(Dealer.active).where(Dealer.code == "NY1"))  # nothing changed

    report = deactivate_dealer(session, "NY1")
    codes = {v: k for k, v in ids.items()}
    moved = Counter(codes.get(to) for to in session.scalars(sa.select(LeadMove.to_dealer_id)))
    assert report.moved_leads == preview.moving
    assert dict(moved) == predicted


def test_the_routes_of_some_zips_are_those_of_the_whole_table(session, ids):
    assign_territories(session, "zip,dealer_code\n10601,NJ1\n10002,NY1\n")
    some = ["10001", "10002", "10601", "06902", "09001", "90210"]
    full = compute_routes(session, excluding=ids["NY1"])
    only = sa.select(ZipCode.zip5).where(ZipCode.zip5.in_(some))
    routes = compute_routes(session, excluding=ids["NY1"], only=only)
    assert routes == {zip5: full[zip5] for zip5 in some if zip5 in full}
    assert routes["10601"][:2] == (ids["NJ1"], "territory")
    assert "09001" not in routes  # military: no centre, no route


def test_a_dealer_without_waiting_leads_moves_none(session, ids):
    preview = deactivation_preview(session, "LA1")
    assert (preview.moving, preview.destinations) == (0, [])
    with pytest.raises(LookupError):
        deactivation_preview(session, "NOPE")


def test_reactivation_routes_the_zips_back(session, ids):
    assert reactivate_dealer(session, "NY1") is None  # already active
    deactivate_dealer(session, "NY1")
    assert session.get(ZipRoute, "10019").dealer_id != ids["NY1"]
    routes = reactivate_dealer(session, "ny1")
    assert routes is not None and routes.dealers == 4
    session.expire_all()
    assert session.get(ZipRoute, "10019").dealer_id == ids["NY1"]
    assert session.get(Dealer, ids["NY1"]).active


def test_save_refuses_a_taken_code_and_keeps_the_webhook_secret(session, ids):
    row = dict(zip(DEALER_HEADER.split(","), dealer_line("NY1").split(","), strict=True))
    with pytest.raises(DealerExists, match="code NY1 is already taken by MINI NY1"):
        save_dealer(session, row, creating=True)
    with pytest.raises(LookupError):
        save_dealer(session, {**row, "code": "ZZ9"}, creating=False)
    secret = "s" * 20
    hooked = {**row, "webhook_url": "https://crm.example.com/hook", "webhook_secret": secret}
    assert save_dealer(session, hooked, creating=False).rows[0].action == "updated"
    renamed = {**hooked, "name": "MINI of Manhattan", "webhook_secret": ""}
    assert save_dealer(session, renamed, creating=False).applied
    dealer = session.get(Dealer, ids["NY1"])
    assert (dealer.name, dealer.webhook_secret) == ("MINI of Manhattan", secret)


def test_search_matches_code_name_city_zip_and_pages(session, ids):
    assert [d.code for d in dealer_page(session, "90036").dealers] == ["LA1"]
    assert [d.code for d in dealer_page(session, "nj").dealers] == ["NJ1"]
    assert dealer_page(session, "mini town").total == 4  # every word somewhere
    assert dealer_page(session, "100%").total == 0  # wildcards are literal
    second = dealer_page(session, "", page=2, per_page=3)
    assert ([d.code for d in second.dealers], second.pages, second.total) == (["NY1"], 2, 4)
    _lead(session, "a@example.com", "10001", ids["NY1"])
    assert dealer_page(session, "NY1").lead_counts == {ids["NY1"]: 1}


def test_route_again_gives_a_pooled_lead_to_its_zips_dealer(session, ids):
    lead = _lead(session, "a@example.com", "07030", ids["NJ1"])
    reassign_lead(session, lead.id, None)
    routed = route_again(session, lead.id)
    assert (routed.dealer_id, routed.routing_reason) == (ids["NJ1"], "nearest")
    assert routed.distance_km is not None
    soldier = _lead(session, "b@example.com", "09001", None)
    with pytest.raises(ValueError, match="no active dealer takes ZIP 09001"):
        route_again(session, soldier.id)
    reasons = session.scalars(sa.select(LeadMove.reason)).all()
    assert reasons == ["admin_reassigned", "admin_reassigned"]
    assert session.get(Lead, soldier.id).dealer_id is None
