"""The admin API (dealers, territories, the unassigned pool, reassignment) and the OpenAPI spec."""

import re

import pytest
import sqlalchemy as sa

from leadsvc.dealers.models import Dealer, LeadMove
from leadsvc.leads.models import Lead
from tests.dealers.conftest import (
    FEED,
    LA_ZIP,
    MILITARY_ZIP,
    NY_ZIP,
    UNASSIGNED,
    feed,
    page_through,
    settle,
    sign_up,
)

DEALERS = "/api/v1/admin/dealers"
BOSTON = {
    "name": "MINI of Boston",
    "street": "1 Commonwealth Ave",
    "city": "Boston",
    "state": "MA",
    "zip": "02215",
    "phone": "(617) 555-0100",
    "lead_email": "leads@miniboston.example.com",
}


def routing_version(session) -> int:
    return session.scalar(sa.text("SELECT max(version) FROM routing_versions"))


def test_admin_lists_and_upserts_dealers_and_assigns_territories(client, session, keys, dealer_ids):
    reply = client.get(DEALERS, headers=keys["admin"])
    assert reply.status_code == 200
    dealers = reply.get_json()["dealers"]
    assert [d["code"] for d in dealers] == ["LA1", "NY1"]
    assert dealers[1] | {"latitude": 0, "longitude": 0} == {
        "code": "NY1",
        "name": "MINI NY1",
        "street": "1 Main Street",
        "city": "Town",
        "state": "NY",
        "zip": "10019",
        "phone": "(800) 555-0100",
        "lead_email": "leads-ny1@example.com",
        "webhook_url": None,
        "has_webhook_secret": False,
        "latitude": 0,
        "longitude": 0,
        "coordinates_from": "zip",
        "active": True,
        "response_hours": None,
        "opening_hours": None,
        "time_zone": None,
    }
    version = routing_version(session)

    created = client.put(f"{DEALERS}/bos1", headers=keys["admin"], json=BOSTON)
    assert created.status_code == 200, created.get_json()
    assert created.get_json() == {
        "applied": True,
        "routing_version": version + 1,
        "rows": [{"line": 1, "key": "BOS1", "action": "created", "reason": None}],
    }
    # The running app routes by the new table at once: Boston's ZIPs now go to BOS1.
    boston_lead = sign_up(client, session, "bos@example.com", "02116")
    assert session.get(Lead, boston_lead).dealer_id == session.scalar(
        sa.select(Dealer.id).where(Dealer.code == "BOS1")
    )

    secret = {"webhook_url": "https://crm.example.com/hook", "webhook_secret": "s" * 20}
    updated = client.put(f"{DEALERS}/BOS1", headers=keys["admin"], json=BOSTON | secret)
    assert updated.get_json()["rows"][0]["action"] == "updated"
    assert updated.get_json()["routing_version"] == version + 2
    same = client.put(f"{DEALERS}/BOS1", headers=keys["admin"], json=BOSTON | secret)
    assert same.get_json()["rows"][0]["action"] == "unchanged"
    assert same.get_json()["routing_version"] is None
    listed = {
        d["code"]: d for d in client.get(DEALERS, headers=keys["admin"]).get_json()["dealers"]
    }
    assert listed["BOS1"]["has_webhook_secret"] is True
    assert "webhook_secret" not in listed["BOS1"] and "s" * 20 not in str(listed)

    before = session.execute(sa.select(Dealer.code, Dealer.zip5, Dealer.phone)).all()
    for code, body, field in (
        ("BOS1", BOSTON | {"zip": "99999"}, "1"),
        ("BOS1", BOSTON | {"phone": "call us"}, "1"),
        ("NEW2", BOSTON | {"state": "XX"}, "1"),
        ("B", BOSTON, "1"),  # a code must be 2-16 characters
        ("BOS1", {k: v for k, v in BOSTON.items() if k != "name"}, "name"),
        ("BOS1", BOSTON | {"code": "OTHER"}, "code"),
    ):
        reply = client.put(f"{DEALERS}/{code}", headers=keys["admin"], json=body)
        assert reply.status_code == 422, body
        assert field in reply.get_json()["errors"], reply.get_json()
    reply = client.put(f"{DEALERS}/NEW2", headers=keys["admin"], json=BOSTON | {"zip": "99999"})
    assert reply.get_json()["errors"] == {"1": "ZIP '99999' is not a US ZIP code"}
    session.expire_all()
    assert session.execute(sa.select(Dealer.code, Dealer.zip5, Dealer.phone)).all() == before
    assert routing_version(session) == version + 2

    territories = "/api/v1/admin/territories"
    bad = client.post(
        territories,
        headers=keys["admin"],
        json={
            "assignments": [
                {"zip": NY_ZIP, "dealer_code": "LA1"},
                {"zip": "10002", "dealer_code": "NOPE"},
            ]
        },
    )
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == {"2": "no dealer with code NOPE"}
    assert session.scalar(sa.text("SELECT count(*) FROM territories")) == 0
    for body in ({}, {"assignments": []}, {"assignments": [{"zip": NY_ZIP}]}):
        assert client.post(territories, headers=keys["admin"], json=body).status_code == 422
    good = client.post(
        territories,
        headers=keys["admin"],
        json={"assignments": [{"zip": NY_ZIP, "dealer_code": "la1"}]},
    )
    assert good.status_code == 200
    assert good.get_json()["rows"] == [
        {"line": 1, "key": "10001 -> LA1", "action": "assigned", "reason": None}
    ]
    assert good.get_json()["routing_version"] == version + 3
    territory_lead = sign_up(client, session, "territory@example.com", NY_ZIP)
    assert feed(client, keys["LA1"])[1] == [territory_lead]
    assert (
        client.get(f"{FEED}/{territory_lead}", headers=keys["LA1"]).get_json()["routing_reason"]
        == "territory"
    )

    # Deactivation: inactive in the list, its unacknowledged leads moved to the next dealer, its
    # keys refused while it stays inactive.
    ny_lead = sign_up(client, session, "ny@example.com", "10019")
    reply = client.post(f"{DEALERS}/NY1/deactivate", headers=keys["admin"])
    assert reply.status_code == 200 and reply.get_json()["active"] is False
    assert client.get(FEED, headers=keys["NY1"]).status_code == 401
    session.expire_all()
    assert session.get(Lead, ny_lead).dealer_id == session.scalar(
        sa.select(Dealer.id).where(Dealer.code == "BOS1")
    )  # the next nearest
    assert session.scalar(sa.select(LeadMove.reason).where(LeadMove.lead_id == ny_lead)) == (
        "dealer_deactivated"
    )
    missing = client.post(f"{DEALERS}/NOPE/deactivate", headers=keys["admin"])
    assert (
        missing.status_code == 404 and missing.get_json()["message"] == "no dealer with code NOPE"
    )


def test_unassigned_pool_pages_and_reassignment_moves_leads_with_a_record(
    client, session, keys, dealer_ids
):
    pool = [sign_up(client, session, f"apo{n}@example.com", MILITARY_ZIP) for n in range(3)]
    ny = sign_up(client, session, "ny@example.com", NY_ZIP)
    la = sign_up(client, session, "la@example.com", LA_ZIP)

    first = client.get(UNASSIGNED, headers=keys["admin"], query_string={"limit": 2})
    assert first.status_code == 200
    assert [lead["id"] for lead in first.get_json()["leads"]] == pool[:2]
    rest = client.get(
        UNASSIGNED,
        headers=keys["admin"],
        query_string={"limit": 2, "cursor": first.get_json()["next_cursor"]},
    )
    assert [lead["id"] for lead in rest.get_json()["leads"]] == pool[2:]
    assert rest.get_json()["next_cursor"] is None
    record = first.get_json()["leads"][0]
    assert (record["email"], record["zip"], record["routing_reason"]) == (
        "apo0@example.com",
        MILITARY_ZIP,
        "unassigned",
    )
    assert record["distance_km"] is None
    for cursor in ("garbage", first.get_json()["next_cursor"][:-3] + "xyz"):
        reply = client.get(UNASSIGNED, headers=keys["admin"], query_string={"cursor": cursor})
        assert reply.status_code == 400
    assert (
        client.get(UNASSIGNED, headers=keys["admin"], query_string={"limit": 1001}).status_code
        == 422
    )

    # NY1 holds a cursor at the end of its feed; the reassigned lead arrives after it.
    _, ny_cursor = page_through(client, keys["NY1"], limit=5, status="all")
    assert (
        client.post(
            "/api/v1/dealer/leads/ack", headers=keys["NY1"], json={"lead_ids": [ny]}
        ).status_code
        == 200
    )
    moved = client.put(
        f"/api/v1/admin/leads/{pool[1]}/dealer", headers=keys["admin"], json={"dealer_code": "ny1"}
    )
    settle(client.application)
    assert moved.status_code == 200
    assert (moved.get_json()["id"], moved.get_json()["routing_reason"]) == (pool[1], "manual")
    assert page_through(client, keys["NY1"], limit=5, cursor=ny_cursor, status="all")[0] == [
        [pool[1]]
    ]
    assert feed(client, keys["NY1"])[1] == [pool[1]]  # the acknowledged lead is not new
    assert [
        lead["id"] for lead in client.get(UNASSIGNED, headers=keys["admin"]).get_json()["leads"]
    ] == [pool[0], pool[2]]

    # An acknowledged lead moved by hand is new to the dealer it moves to.
    to_la = client.put(
        f"/api/v1/admin/leads/{ny}/dealer", headers=keys["admin"], json={"dealer_code": "LA1"}
    )
    settle(client.application)
    assert to_la.status_code == 200 and to_la.get_json()["acknowledged_at"] is None
    assert feed(client, keys["LA1"])[1] == [la, ny]
    assert client.get(f"{FEED}/{ny}", headers=keys["NY1"]).status_code == 404

    back = client.put(
        f"/api/v1/admin/leads/{pool[1]}/dealer", headers=keys["admin"], json={"dealer_code": None}
    )
    assert back.status_code == 200 and back.get_json()["routing_reason"] == "unassigned"
    assert feed(client, keys["NY1"], status="all")[1] == []
    assert pool[1] in [
        lead["id"] for lead in client.get(UNASSIGNED, headers=keys["admin"]).get_json()["leads"]
    ]
    moves = session.execute(
        sa.select(
            LeadMove.lead_id, LeadMove.from_dealer_id, LeadMove.to_dealer_id, LeadMove.reason
        ).order_by(LeadMove.id)
    ).all()
    assert [tuple(m) for m in moves] == [
        (pool[1], None, dealer_ids["NY1"], "admin_reassigned"),
        (ny, dealer_ids["NY1"], dealer_ids["LA1"], "admin_reassigned"),
        (pool[1], dealer_ids["NY1"], None, "admin_reassigned"),
    ]

    for lead_id, body, status in (
        (pool[0], {"dealer_code": "NOPE"}, 422),
        (pool[0], {}, 422),
        (pool[0], {"dealer_code": 7}, 422),
        (999_999, {"dealer_code": "NY1"}, 404),
        (999_999, {"dealer_code": None}, 404),
    ):
        reply = client.put(
            f"/api/v1/admin/leads/{lead_id}/dealer", headers=keys["admin"], json=body
        )
        assert reply.status_code == status, (lead_id, body, reply.get_json())
    assert client.put(
        f"/api/v1/admin/leads/{pool[0]}/dealer", headers=keys["admin"], json={"dealer_code": "NOPE"}
    ).get_json()["errors"] == {"dealer_code": "no active dealer with code NOPE"}
    client.post(f"{DEALERS}/LA1/deactivate", headers=keys["admin"])
    inactive = client.put(
        f"/api/v1/admin/leads/{pool[0]}/dealer", headers=keys["admin"], json={"dealer_code": "LA1"}
    )
    assert inactive.status_code == 422
    session.expire_all()
    assert session.get(Lead, pool[0]).dealer_id is None
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(LeadMove)
            .where(LeadMove.reason == "admin_reassigned")
        )
        == 3
    )


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the spec is the same on both
def test_openapi_documents_every_keyed_endpoint(app, client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    operations = {
        (_openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/v1/dealer/", "/api/v1/admin/"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert len(operations) == 13  # 9 here, and follow-up's answer, figures and holidays
    for path, method in sorted(operations):
        operation = spec["paths"][path][method]
        where = f"{method.upper()} {path}"
        assert operation["security"] == [{"bearerAuth": []}], where
        responses = operation["responses"]
        assert {"200", "401", "403"} <= set(responses), where
        for status in ("401", "403"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, where
        parameters = {p["name"]: p for p in operation.get("parameters", [])}
        parameters |= {p["name"]: p for p in spec["paths"][path].get("parameters", [])}
        if "{lead_id}" in path or path.endswith("/deactivate"):
            assert "404" in responses, where
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters.values()):
            assert "422" in responses, where
        if "cursor" in parameters:
            assert "400" in responses, where
        for name in re.findall(r"{(\w+)}", path):
            assert parameters[name]["in"] == "path" and parameters[name]["required"], where
    feed_op = spec["paths"][FEED]["get"]
    query = {p["name"]: p["schema"] for p in feed_op["parameters"] if p["in"] == "query"}
    assert set(query) == {"cursor", "limit", "since", "status", "format"}
    assert (query["limit"]["default"], query["limit"]["maximum"]) == (100, 1000)
    assert query["status"]["enum"] == ["new", "all"] and query["format"]["enum"] == [
        "json",
        "csv",
        "adf",
    ]
    unassigned = spec["paths"][UNASSIGNED]["get"]
    assert {p["name"] for p in unassigned["parameters"]} == {"cursor", "limit"}
    assert "requestBody" in spec["paths"]["/api/v1/dealer/leads/ack"]["post"]
