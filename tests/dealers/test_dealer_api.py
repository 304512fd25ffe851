"""The dealer lead API: a dealer's own leads, page by page, as JSON, CSV or ADF; acknowledgement.

Several dealers and keys; every lead is made through the signup API unless the API cannot make it
(control characters, consent states other flows set). Every cross-dealer probe must reveal nothing.
"""

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from lxml import etree

from leadsvc.dealers.adf import ADF_DTD
from leadsvc.dealers.formats import CSV_COLUMNS
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead
from leadsvc.pagination import CursorPager
from tests.dealers.conftest import (
    ACK,
    FEED,
    LA_ZIP,
    MILITARY_ZIP,
    UNASSIGNED,
    feed,
    page_through,
    set_lead,
    sign_up,
)

FIELDS = {
    "id",
    "first_name",
    "last_name",
    "email",
    "zip",
    "zip4",
    "distance_km",
    "distance_miles",
    "routing_reason",
    "consent",
    "email_status",
    "dealer_contact",
    "created_at",
    "acknowledged_at",
    "interests",
    "source",
}
PERSONAL = ("first_name", "last_name", "email", "zip", "zip4", "interests", "source")


def error_only(reply) -> dict:
    """The reply is the API's error shape and carries nothing else."""
    body = reply.get_json()
    assert set(body) == {"code", "status", "message"}, body
    return body


def test_feed_serves_own_leads_oldest_first_with_every_field_and_pages_without_gaps(
    client, session, keys, dealer_ids
):
    first = sign_up(
        client,
        session,
        "first@example.com",
        "10001-1234",
        first_name="Ann",
        last_name="Lee",
        interests=["Countryman", "Cooper S"],
        source="https://www.miniusa.com/stay-in-the-loop",
    )
    ny = [first] + [sign_up(client, session, f"ny{n}@example.com") for n in range(6)]
    la = sign_up(client, session, "la@example.com", LA_ZIP)
    sign_up(client, session, "apo@example.com", MILITARY_ZIP)

    reply, ids = feed(client, keys["NY1"])
    assert reply.mimetype == "application/json"
    assert ids == ny  # newest last; LA1's and the unassigned lead are not there
    leads = reply.get_json()["leads"]
    assert all(set(lead) == FIELDS for lead in leads)
    record = dict(leads[0])
    created = datetime.fromisoformat(record.pop("created_at"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert record.pop("distance_km") == pytest.approx(2.07, abs=0.05)
    assert record.pop("distance_miles") == pytest.approx(1.29, abs=0.05)
    assert record == {
        "id": first,
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "first@example.com",
        "zip": "10001",
        "zip4": "1234",
        "routing_reason": "nearest",
        "consent": "given",
        "email_status": "ok",
        "dealer_contact": True,
        "acknowledged_at": None,
        "interests": ["Countryman", "Cooper S"],
        "source": "https://www.miniusa.com/stay-in-the-loop",
    }
    created_times = [lead["created_at"] for lead in leads]
    assert created_times == sorted(created_times)
    assert feed(client, keys["LA1"])[1] == [la]

    pages, cursor = page_through(client, keys["NY1"], limit=3)
    assert pages == [ny[0:3], ny[3:6], ny[6:]]
    # The end of the feed hands out a cursor to poll on from: nothing again, then only what is new.
    assert cursor is not None
    reply, ids = feed(client, keys["NY1"], limit=3, cursor=cursor)
    assert ids == [] and reply.get_json()["next_cursor"] == cursor
    later = sign_up(client, session, "later@example.com")
    assert page_through(client, keys["NY1"], limit=3, cursor=cursor)[0] == [[later]]
    # A page exactly `limit` long still ends the feed correctly: the next one is empty.
    pages, _ = page_through(client, keys["NY1"], limit=4)
    assert pages == [ny[0:4], [*ny[4:], later], []]
    # A dealer with no leads at all: an empty page and nothing to poll on from yet.
    set_lead(session, la, dealer_id=dealer_ids["NY1"])
    body = feed(client, keys["LA1"])[0].get_json()
    assert (body["leads"], body["next_cursor"]) == ([], None)


def _bulk_leads(session, dealer_id: int, count: int) -> list[int]:
    now = datetime.now(UTC)
    session.execute(
        sa.insert(Lead),
        [
            {
                "email": f"bulk{n}@example.com",
                "email_key": f"bulk{n}@example.com",
                "email_as_typed": f"bulk{n}@example.com",
                "first_name": "Bulk",
                "last_name": str(n),
                "zip5": "10001",
                "consent_status": "given",
                "consent_text_version": 1,
                "signup_count": 1,
                "dealer_id": dealer_id,
                "routing_reason": "nearest",
                "delivery_seq": n + 1,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ],
    )
    session.commit()
    return list(session.scalars(sa.select(Lead.id).order_by(Lead.delivery_seq, Lead.id)))


def test_limit_defaults_to_100_and_is_at_most_1000(client, session, keys, dealer_ids):
    ids = _bulk_leads(session, dealer_ids["NY1"], 101)
    reply, first = feed(client, keys["NY1"])
    assert first == ids[:100]
    reply, rest = feed(client, keys["NY1"], cursor=reply.get_json()["next_cursor"])
    assert rest == ids[100:]
    assert feed(client, keys["NY1"], limit=1000)[1] == ids
    for limit in ("1001", "0", "-1", "ten"):
        reply = client.get(FEED, headers=keys["NY1"], query_string={"limit": limit})
        assert reply.status_code == 422, limit
        assert set(reply.get_json()["errors"]) == {"limit"}


def test_status_and_since_filter_the_feed(client, session, keys):
    old, acked, fresh = (
        sign_up(client, session, f"{name}@example.com") for name in ("old", "acked", "fresh")
    )
    set_lead(session, old, created_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert client.post(ACK, headers=keys["NY1"], json={"lead_ids": [acked]}).status_code == 200

    assert feed(client, keys["NY1"])[1] == [old, fresh]  # status=new is the default
    assert feed(client, keys["NY1"], status="new")[1] == [old, fresh]
    reply, ids = feed(client, keys["NY1"], status="all")
    assert ids == [old, acked, fresh]
    assert [lead["acknowledged_at"] is not None for lead in reply.get_json()["leads"]] == [
        False,
        True,
        False,
    ]
    since = "2021-06-01T00:00:00+02:00"
    assert feed(client, keys["NY1"], since=since, status="all")[1] == [acked, fresh]
    assert feed(client, keys["NY1"], since=since)[1] == [fresh]
    assert feed(client, keys["NY1"], since="2019-12-31T23:00:00Z")[1] == [old, fresh]
    assert feed(client, keys["NY1"], since="2099-01-01T00:00:00Z")[1] == []
    for params in (
        {"status": "acked"},
        {"since": "yesterday"},
        {"since": "2021-06-01T00:00:00"},  # a naive time is ambiguous
    ):
        reply = client.get(FEED, headers=keys["NY1"], query_string=params)
        assert reply.status_code == 422 and set(reply.get_json()["errors"]) == set(params)


def test_withdrawn_leads_carry_no_personal_data_and_pending_ones_are_not_served(
    client, session, keys
):
    given = sign_up(client, session, "given@example.com")
    withdrawn = sign_up(
        client,
        session,
        "withdrawn@example.com",
        "10001-9999",
        first_name="Wanda",
        interests=["Clubman"],
        source="https://www.miniusa.com/",
    )
    erased = sign_up(client, session, "erased@example.com")
    pending = sign_up(client, session, "pending@example.com")
    confirmed = sign_up(client, session, "confirmed@example.com")
    set_lead(session, withdrawn, consent_status="withdrawn")
    set_lead(session, erased, consent_status="erased")
    set_lead(session, pending, consent_status="pending")
    set_lead(session, confirmed, consent_status="confirmed")

    reply, ids = feed(client, keys["NY1"])
    assert ids == [given, withdrawn, erased, confirmed]
    by_id = {lead["id"]: lead for lead in reply.get_json()["leads"]}
    for lead_id, state in ((withdrawn, "withdrawn"), (erased, "erased")):
        record = by_id[lead_id]
        assert record["consent"] == state
        assert {name: record[name] for name in PERSONAL} == dict.fromkeys(PERSONAL)
        assert record["routing_reason"] == "nearest" and record["created_at"]
        single = client.get(f"{FEED}/{lead_id}", headers=keys["NY1"])
        assert single.status_code == 200 and single.get_json() == record
    assert by_id[confirmed]["consent"] == "confirmed"
    assert by_id[confirmed]["email"] == "confirmed@example.com"
    assert "withdrawn@example.com" not in reply.get_data(as_text=True)
    assert "Wanda" not in reply.get_data(as_text=True)

    csv_body = client.get(FEED, headers=keys["NY1"], query_string={"format": "csv"}).get_data(
        as_text=True
    )
    assert "withdrawn@example.com" not in csv_body and "Wanda" not in csv_body
    assert "Clubman" not in csv_body and "miniusa" not in csv_body
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(csv_body, newline=""))}
    assert [rows[str(withdrawn)][name] for name in PERSONAL] == [""] * len(PERSONAL)
    assert rows[str(withdrawn)]["consent"] == "withdrawn"

    # The pending lead (awaiting double opt-in) does not exist for the dealer.
    missing = client.get(f"{FEED}/{pending}", headers=keys["NY1"])
    assert missing.status_code == 404
    assert missing.get_json() == client.get(f"{FEED}/999999", headers=keys["NY1"]).get_json()
    reply = client.post(ACK, headers=keys["NY1"], json={"lead_ids": [pending, given]})
    assert reply.get_json() == {"acknowledged": [given], "not_found": [pending]}


def _resign(cursor: str, payload: dict) -> str:
    """The cursor with its payload swapped for `payload` and its signature kept."""
    encoded = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    return encoded.decode().rstrip("=") + "." + cursor.rsplit(".", 1)[1]


def test_no_id_ack_or_cursor_lets_a_dealer_reach_another_dealers_leads(
    client, session, keys, dealer_ids
):
    ny = [sign_up(client, session, f"ny{n}@example.com") for n in range(3)]
    la = sign_up(client, session, "la@example.com", LA_ZIP)
    unassigned = sign_up(client, session, "apo@example.com", MILITARY_ZIP)
    missing = 999_999

    # One lead by id: another dealer's, an unassigned and a missing id answer alike.
    not_found = client.get(f"{FEED}/{missing}", headers=keys["NY1"])
    assert not_found.status_code == 404 and error_only(not_found)["message"] == "No such lead."
    for probe in (la, unassigned):
        reply = client.get(f"{FEED}/{probe}", headers=keys["NY1"])
        assert (reply.status_code, reply.get_data()) == (404, not_found.get_data())
    assert client.get(f"{FEED}/{ny[0]}", headers=keys["NY1"]).get_json()["id"] == ny[0]
    assert client.get(f"{FEED}/{ny[0]}", headers=keys["LA1"]).get_data() == not_found.get_data()

    # Acknowledging another dealer's lead: reported exactly like a missing id, and not done.
    reply = client.post(
        ACK, headers=keys["NY1"], json={"lead_ids": [la, missing, ny[0], unassigned]}
    )
    assert reply.status_code == 200
    assert reply.get_json() == {
        "acknowledged": [ny[0]],
        "not_found": sorted([la, missing, unassigned]),
    }
    session.expire_all()
    assert session.get(Lead, la).acknowledged_at is None
    assert session.get(Lead, unassigned).acknowledged_at is None
    assert feed(client, keys["LA1"])[1] == [la]

    # No filter shows another dealer's lead or the unassigned pool.
    for params in ({}, {"status": "all"}, {"since": "2000-01-01T00:00:00Z", "status": "all"}):
        assert set(feed(client, keys["NY1"], **params)[1]) <= set(ny)
        assert feed(client, keys["LA1"], **params)[1] == [la]

    # Cursors: only the dealer and the filters and format they were issued for.
    reply, _ = feed(client, keys["NY1"], limit=1, status="all")
    ny_cursor = reply.get_json()["next_cursor"]
    la_cursor = feed(client, keys["LA1"], limit=1, status="all")[0].get_json()["next_cursor"]
    sign_up(client, session, "apo2@example.com", MILITARY_ZIP)
    pool = client.get(UNASSIGNED, headers=keys["admin"], query_string={"limit": 1})
    admin_cursor = pool.get_json()["next_cursor"]
    assert admin_cursor
    la_scope = json.loads(base64.urlsafe_b64decode(la_cursor.split(".")[0] + "=="))
    forged_scope = {**la_scope, "s": {**la_scope["s"], "d": dealer_ids["NY1"]}}
    wrong_key = CursorPager("another-secret-" + "y" * 32, "dealer-feed")
    probes = {
        "another dealer's cursor": (keys["LA1"], ny_cursor, {"status": "all"}),
        "a cursor with another dealer put in": (
            keys["NY1"],
            _resign(la_cursor, forged_scope),
            {"status": "all"},
        ),
        "a cursor signed with another key": (
            keys["LA1"],
            wrong_key.encode((0, 0), la_scope["s"]),
            {"status": "all"},
        ),
        "a broken signature": (
            keys["NY1"],
            ny_cursor[:-2] + ("AA" if ny_cursor[-2:] != "AA" else "BB"),
            {"status": "all"},
        ),
        "a made-up cursor": (keys["NY1"], "eyJwIjpbMCwwXX0.bm90LWEtc2lnbmF0dXJl", {}),
        "random text": (keys["NY1"], "hello", {}),
        "the unassigned pool's cursor": (keys["NY1"], admin_cursor, {}),
        "status changed": (keys["NY1"], ny_cursor, {"status": "new"}),
        "since added": (keys["NY1"], ny_cursor, {"status": "all", "since": "2000-01-01T00:00:00Z"}),
        "format changed": (keys["NY1"], ny_cursor, {"status": "all", "format": "csv"}),
        "format changed by Accept": (
            keys["NY1"] | {"Accept": "application/xml"},
            ny_cursor,
            {"status": "all"},
        ),
    }
    for what, (headers, cursor, params) in probes.items():
        reply = client.get(FEED, headers=headers, query_string={**params, "cursor": cursor})
        assert reply.status_code == 400, what
        assert reply.mimetype == "application/json", what
        body = error_only(reply)
        assert "@example.com" not in reply.get_data(as_text=True), what
        assert body["message"] in {
            "This cursor is not valid.",
            "This cursor was issued for another request.",
        }, what
    # The same cursor with the same filters, and another limit, goes on where it left off.
    assert feed(client, keys["NY1"], status="all", cursor=ny_cursor, limit=10)[1] == ny[1:]
    # A dealer cursor does not page the admin's pool either.
    reply = client.get(UNASSIGNED, headers=keys["admin"], query_string={"cursor": ny_cursor})
    assert reply.status_code == 400


def test_acknowledgement_is_idempotent_and_validated(client, session, keys):
    a, b = sign_up(client, session, "a@example.com"), sign_up(client, session, "b@example.com")
    reply = client.post(ACK, headers=keys["NY1"], json={"lead_ids": [b, a, a]})
    assert reply.status_code == 200
    assert reply.get_json() == {"acknowledged": [a, b], "not_found": []}
    session.expire_all()
    first_times = {lead.id: lead.acknowledged_at for lead in session.scalars(sa.select(Lead))}
    assert all(first_times.values())
    again = client.post(ACK, headers=keys["NY1"], json={"lead_ids": [a, b]})
    assert again.get_json() == reply.get_json()
    session.expire_all()
    assert {
        lead.id: lead.acknowledged_at for lead in session.scalars(sa.select(Lead))
    } == first_times
    single = client.get(f"{FEED}/{a}", headers=keys["NY1"]).get_json()
    assert datetime.fromisoformat(single["acknowledged_at"]) == first_times[a]
    assert feed(client, keys["NY1"])[1] == []

    c = sign_up(client, session, "c@example.com")
    bad_bodies = [
        {},
        {"lead_ids": []},
        {"lead_ids": ["1"]},
        {"lead_ids": [1.5]},
        {"lead_ids": [True]},
        {"lead_ids": [None]},
        {"lead_ids": [0]},
        {"lead_ids": [-3]},
        {"lead_ids": c},
        {"lead_ids": [c] * 1001},
        {"lead_ids": [c], "all": True},
        [c],
    ]
    for body in bad_bodies:
        reply = client.post(ACK, headers=keys["NY1"], json=body)
        assert reply.status_code == 422, body
    assert client.post(
        ACK, headers=keys["NY1"], data="[", content_type="application/json"
    ).status_code in {400, 422}
    assert feed(client, keys["NY1"])[1] == [c]  # none of those acknowledged anything
    many = list(range(c, c + 1000))
    reply = client.post(ACK, headers=keys["NY1"], json={"lead_ids": many})
    assert reply.get_json() == {"acknowledged": [c], "not_found": many[1:]}


FORMULAS = {  # stored value -> how the CSV cell must read
    "=SUM(1+2)": "'=SUM(1+2)",
    "+Plus": "'+Plus",
    "-Minus": "'-Minus",
    "@Mention": "'@Mention",
    "\tTab": "'\tTab",
    "\rReturn": "'\rReturn",
}


def test_csv_has_a_header_row_and_neutralises_formulas(client, session, keys):
    plain = sign_up(client, session, "plain@example.com", first_name="Jane")
    via_api = sign_up(
        client,
        session,
        "=cmd@example.com",
        first_name="=SUM(1+2)",
        last_name="+Plus",
        interests=["-Minus", "Mini"],
        source="-form.1",
    )
    via_sql = sign_up(client, session, "-x@example.com")
    # The signup API refuses "@" and control characters in names; other flows might not.
    set_lead(session, via_sql, first_name="@Mention", last_name="\tTab", source="\rReturn")
    other = sign_up(client, session, "other@example.com")
    set_lead(session, other, first_name="\rReturn", last_name="-Minus")

    by_accept = client.get(FEED, headers=keys["NY1"] | {"Accept": "text/csv"})
    by_param = client.get(FEED, headers=keys["NY1"], query_string={"format": "csv"})
    for reply in (by_accept, by_param):
        assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert by_accept.get_data() == by_param.get_data()
    table = list(csv.reader(io.StringIO(by_param.get_data(as_text=True), newline="")))
    assert table[0] == list(CSV_COLUMNS)
    rows = {int(row[0]): dict(zip(CSV_COLUMNS, row, strict=True)) for row in table[1:]}
    assert list(rows) == [plain, via_api, via_sql, other]
    assert rows[plain]["first_name"] == "Jane" and rows[plain]["email"] == "plain@example.com"
    assert rows[plain]["distance_km"] == "2.072" and rows[plain]["zip"] == "10001"
    assert (rows[via_api]["first_name"], rows[via_api]["last_name"]) == ("'=SUM(1+2)", "'+Plus")
    assert rows[via_api]["email"] == "'=cmd@example.com"
    assert rows[via_api]["interests"] == "'-Minus; Mini"
    assert rows[via_api]["source"] == "'-form.1"
    assert (rows[via_sql]["first_name"], rows[via_sql]["last_name"]) == ("'@Mention", "'\tTab")
    assert (rows[via_sql]["email"], rows[via_sql]["source"]) == ("'-x@example.com", "'\rReturn")
    assert (rows[other]["first_name"], rows[other]["last_name"]) == ("'\rReturn", "'-Minus")
    cells = [cell for row in table[1:] for cell in row]
    for stored in FORMULAS:
        assert stored not in cells  # never un-neutralised, wherever it is
    assert {FORMULAS[s] for s in FORMULAS} <= set(cells)


def test_csv_and_adf_pages_carry_the_cursor_in_headers(client, session, keys):
    ids = [sign_up(client, session, f"p{n}@example.com") for n in range(3)]
    for headers, params in (
        (keys["NY1"] | {"Accept": "text/csv"}, {}),
        (keys["NY1"], {"format": "adf"}),
    ):
        first = client.get(FEED, headers=headers, query_string={**params, "limit": 2})
        cursor = first.headers["X-Next-Cursor"]
        link = first.headers["Link"]
        assert link.startswith("<") and link.endswith('>; rel="next"')
        url = urlsplit(link[1:].split(">")[0])
        assert url.path == FEED and "limit=2" in url.query
        last = client.get(f"{url.path}?{url.query}", headers=headers)
        assert last.status_code == 200 and "Link" not in last.headers  # nothing more for now
        assert last.headers["X-Next-Cursor"] != cursor
        if params:
            served = etree.fromstring(first.get_data()).xpath("//prospect/id/text()")
            served += etree.fromstring(last.get_data()).xpath("//prospect/id/text()")
        else:
            served = [row.split(",")[0] for row in first.get_data(as_text=True).splitlines()[1:]]
            served += [row.split(",")[0] for row in last.get_data(as_text=True).splitlines()[1:]]
        assert served == [str(i) for i in ids]


def _validated_adf(reply):
    assert reply.status_code == 200 and reply.mimetype == "application/xml"
    body = reply.get_data()
    assert body.startswith(b'<?xml version="1.0"?>\n<?adf version="1.0"?>\n')
    root = etree.fromstring(body)
    dtd = etree.DTD(str(ADF_DTD))
    assert dtd.validate(root), dtd.error_log.filter_from_errors()
    assert root.tag == "adf" and root.getprevious().target == "adf"
    return root


def test_adf_page_is_one_valid_document_with_a_prospect_per_sendable_lead(
    client, session, keys, dealer_ids
):
    assert ADF_DTD.is_file(), ADF_DTD
    a = sign_up(
        client,
        session,
        "a@example.com",
        "10001-1234",
        first_name="Ann",
        last_name="Lee",
        interests=["Countryman", "Cooper S & <Works>"],
    )
    b = sign_up(client, session, "b@example.com")
    withdrawn = sign_up(client, session, "gone@example.com")
    tab = sign_up(client, session, "tab@example.com")
    set_lead(session, withdrawn, consent_status="withdrawn")
    set_lead(session, tab, first_name="\tTab", last_name="\x0bVertical\x01")
    # A dealer name with a character XML cannot carry must not break the whole page.
    session.execute(sa.update(Dealer).where(Dealer.code == "NY1").values(name="MINI\x0b of NY"))
    session.commit()

    by_param = client.get(FEED, headers=keys["NY1"], query_string={"format": "adf"})
    root = _validated_adf(by_param)
    for accept in ("application/xml", "text/xml"):
        by_accept = client.get(FEED, headers=keys["NY1"] | {"Accept": accept})
        _validated_adf(by_accept)
        assert by_accept.get_data() == by_param.get_data()
    prospects = root.findall("prospect")
    assert [p.findtext("id") for p in prospects] == [str(a), str(b), str(tab)]
    assert b"gone@example.com" not in by_param.get_data()
    first = prospects[0]
    assert first.findtext("customer/contact/name[@part='first']") == "Ann"
    assert first.findtext("customer/contact/email") == "a@example.com"
    assert first.findtext("customer/contact/address/postalcode") == "10001-1234"
    assert [v.findtext("model") for v in first.findall("vehicle")] == [
        "Countryman",
        "Cooper S & <Works>",
    ]
    assert first.findtext("vendor/id") == "NY1"
    assert first.findtext("vendor/vendorname") == "MINI of NY"
    assert prospects[2].findtext("customer/contact/name[@part='last']") == "Vertical"

    # JSON stays the default, for no Accept, */* and application/json alike.
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        reply = client.get(FEED, headers=keys["NY1"] | headers)
        assert reply.mimetype == "application/json" and "leads" in reply.get_json()

    # A page with nothing ADF can send: 204, no body, and still the cursor past it.
    withdrawn_la = sign_up(client, session, "la@example.com", LA_ZIP)
    set_lead(session, withdrawn_la, consent_status="withdrawn")
    empty = client.get(FEED, headers=keys["LA1"], query_string={"format": "adf"})
    assert empty.status_code == 204 and empty.get_data() == b""
    after = client.get(
        FEED,
        headers=keys["LA1"],
        query_string={"format": "adf", "cursor": empty.headers["X-Next-Cursor"]},
    )
    assert after.status_code == 204
    la_json = feed(client, keys["LA1"])[1]
    assert la_json == [withdrawn_la]
