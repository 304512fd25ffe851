"""Dealer import, territory assignment and deactivation: reported per row, all-or-nothing."""

import re

import pytest
import sqlalchemy as sa

from leadsvc.db import utcnow
from leadsvc.dealers.directory import (
    ImportFileError,
    assign_territories,
    deactivate_dealer,
    import_dealers,
)
from leadsvc.dealers.models import Dealer, LeadMove, Territory
from leadsvc.leads.models import Lead
from tests.factories import DEALER_HEADER, dealer_csv, dealer_line


def dealer_codes(session) -> list[str]:
    return list(session.scalars(sa.select(Dealer.code).order_by(Dealer.code)))


def outcomes(report) -> list[tuple]:
    return [(row.line, row.key, row.action, row.reason) for row in report.rows]


def test_import_creates_then_reports_unchanged_and_updated(session):
    first = import_dealers(session, dealer_csv(dealer_line("SC012", "29401", state="SC")))
    assert outcomes(first) == [(2, "SC012", "created", None)]
    dealer = session.scalar(sa.select(Dealer))
    assert (dealer.zip5, dealer.coordinates_from, dealer.active) == ("29401", "zip", True)
    assert dealer.latitude == pytest.approx(32.78, abs=0.05)  # the ZIP's centre, via pgeocode
    again = import_dealers(session, dealer_csv(dealer_line("SC012", "29401", state="SC")))
    assert outcomes(again) == [(2, "SC012", "unchanged", None)]
    assert again.routes is None  # nothing changed, no rebuild
    moved = import_dealers(
        session,
        dealer_csv(dealer_line("SC012", "29401", state="SC", latitude=32.8, longitude=-79.94)),
    )
    assert outcomes(moved) == [(2, "SC012", "updated", None)]
    session.expire_all()
    assert session.scalar(sa.select(Dealer.coordinates_from)) == "explicit"


def test_codes_are_upper_cased_and_comments_skipped(session):
    report = import_dealers(session, "# demo\n" + dealer_csv(dealer_line("ab12")))
    assert outcomes(report) == [(3, "AB12", "created", None)]


BAD_ROWS = [
    (dealer_line("BAD1", "99999"), "ZIP '99999' is not a US ZIP code"),
    (dealer_line("", "10001"), "missing code"),
    (dealer_line("BAD2", state="XX"), "state 'XX' is not a US state code"),
    (dealer_line("BAD3", latitude=40.1), "give both latitude and longitude, or neither"),
    (dealer_line("BAD4", latitude=95, longitude=10), "latitude 95 is out of range"),
    (
        dealer_line("BAD5", webhook_url="https://crm.example.com/hook"),
        "webhook_secret of at least 16 characters is required with webhook_url",
    ),
    (
        dealer_line("BAD6", webhook_url="ftp://x", webhook_secret="s" * 20),
        "webhook_url 'ftp://x' is not an http(s) URL",
    ),
    (
        # A bracket outside an IPv6 address: the URL parser's own error, "Invalid IPv6 URL",
        # used to come back instead of the reason.
        dealer_line("BAD10", webhook_url="http://a]b/hook", webhook_secret="s" * 20),
        "webhook_url 'http://a]b/hook' is not allowed: it is not an http(s) URL (webhooks go to "
        "public addresses, or to networks listed in WEBHOOK_ALLOWED_NETWORKS)",
    ),
    (
        dealer_line("BAD7", "09001", state="AE"),
        "ZIP 09001 has no map position: give latitude and longitude",
    ),
    (
        dealer_line("BAD8").replace("leads-bad8@example.com", "not-an-email"),
        "lead_email 'not-an-email' is not a valid email address",
    ),
    (
        dealer_line("BAD9").replace("(800) 555-0100", "call us"),
        "phone 'call us' is not a phone number",
    ),
    ("OK1,Too,Few", "3 values for 12 columns"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_ROWS)
def test_an_invalid_row_is_rejected_with_its_line_and_nothing_is_applied(session, line, reason):
    report = import_dealers(session, dealer_csv(dealer_line("GOOD1"), line, dealer_line("GOOD2")))
    assert not report.applied
    assert [(r.line, r.action, r.reason) for r in report.rejected] == [(3, "rejected", reason)]
    assert [r.action for r in report.rows if r.line != 3] == ["not applied", "not applied"]
    assert dealer_codes(session) == []


def test_duplicate_code_in_the_file_names_the_first_line(session):
    report = import_dealers(
        session, dealer_csv(dealer_line("DUP1"), dealer_line("X2"), dealer_line("dup1"))
    )
    assert [(r.line, r.reason) for r in report.rejected] == [
        (4, "duplicate code DUP1 (first on line 2)")
    ]
    assert dealer_codes(session) == []


def test_partial_applies_the_valid_rows_only(session):
    report = import_dealers(
        session,
        dealer_csv(dealer_line("GOOD1"), dealer_line("BAD1", "00000"), dealer_line("GOOD2")),
        partial=True,
    )
    assert report.applied
    assert [r.action for r in report.rows] == ["created", "rejected", "created"]
    assert dealer_codes(session) == ["GOOD1", "GOOD2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEALER_HEADER + ",fax\n", "unknown column(s): fax"),
        ("code,name\n", "missing column(s): street"),
        ("", "the file is empty"),
    ],
)
def test_a_bad_header_is_an_error_for_the_whole_file(session, text, message):
    with pytest.raises(ImportFileError, match=re.escape(message)):
        import_dealers(session, text)


def test_territory_assignment_checks_every_row_first(session):
    import_dealers(session, dealer_csv(dealer_line("NY1"), dealer_line("NJ1", "07030", state="NJ")))
    report = assign_territories(
        session, "zip,dealer_code\n10001,NJ1\n99999,NJ1\n10002,NOPE\n10001,NY1\n"
    )
    assert [(r.line, r.reason) for r in report.rejected] == [
        (3, "ZIP '99999' is not a US ZIP code"),
        (4, "no dealer with code NOPE"),
        (5, "duplicate ZIP 10001 (first on line 2)"),
    ]
    assert session.scalar(sa.select(sa.func.count()).select_from(Territory)) == 0
    report = assign_territories(session, "zip,dealer_code\n10001,nj1\n10002-1234,NJ1\n")
    assert report.applied and report.count("assigned") == 2
    assert dict(session.execute(sa.select(Territory.zip5, Territory.dealer_id)).all()).keys() == {
        "10001",
        "10002",
    }


def _lead(session, email, zip5, dealer_id, acknowledged=False) -> Lead:
    now = utcnow()
    lead = Lead(
        email=email,
        email_key=email,
        email_as_typed=email,
        first_name="A",
        last_name="B",
        zip5=zip5,
        consent_status="given",
        consent_text_version=1,
        signup_count=1,
        dealer_id=dealer_id,
        routing_reason="nearest",
        created_at=now,
        updated_at=now,
        acknowledged_at=now if acknowledged else None,
    )
    session.add(lead)
    session.commit()
    return lead


def test_deactivation_moves_unacknowledged_leads_and_records_each_move(session):
    import_dealers(
        session,
        dealer_csv(
            dealer_line("NY1"),
            dealer_line("NJ1", "07030", state="NJ"),
            dealer_line("LA1", "90036", state="CA"),
        ),
    )
    ids = dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())
    pending = _lead(session, "a@example.com", "10001", ids["NY1"])
    acknowledged = _lead(session, "b@example.com", "10001", ids["NY1"], acknowledged=True)
    other = _lead(session, "c@example.com", "90210", ids["LA1"])
    report = deactivate_dealer(session, "ny1")
    assert report.moved_leads == 1
    session.expire_all()
    assert session.get(Lead, pending.id).dealer_id == ids["NJ1"]
    assert session.get(Lead, pending.id).routing_reason == "nearest"
    assert session.get(Lead, pending.id).routing_version == report.routes.version
    assert session.get(Lead, acknowledged.id).dealer_id == ids["NY1"]
    assert session.get(Lead, other.id).dealer_id == ids["LA1"]
    move = session.scalars(sa.select(LeadMove)).one()
    assert (move.lead_id, move.from_dealer_id, move.to_dealer_id, move.reason) == (
        pending.id,
        ids["NY1"],
        ids["NJ1"],
        "dealer_deactivated",
    )


def test_deactivating_the_last_dealer_moves_leads_to_the_unassigned_pool(session):
    import_dealers(session, dealer_csv(dealer_line("NY1")))
    lead = _lead(session, "a@example.com", "10001", session.scalar(sa.select(Dealer.id)))
    deactivate_dealer(session, "NY1")
    session.expire_all()
    lead = session.get(Lead, lead.id)
    assert (lead.dealer_id, lead.routing_reason, lead.distance_km) == (None, "unassigned", None)


def test_deactivating_an_unknown_dealer_is_an_error(session):
    with pytest.raises(LookupError, match="no dealer with code NOPE"):
        deactivate_dealer(session, "nope")
