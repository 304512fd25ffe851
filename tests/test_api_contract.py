"""The API holds its OpenAPI contract under any input: schemathesis over every operation.

In-process against the app on PostgreSQL, with real keys for the keyed operations. No generated
request may cause a server error, an undocumented status code or content type, or a body or
header that breaks the documented schema.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from leadsvc.app import create_app
from leadsvc.auth.keys import create_key
from leadsvc.dealers.directory import import_dealers
from leadsvc.extensions import db
from leadsvc.settings import Settings
from tests.conftest import TEST_SECRET_KEY, reset_postgres
from tests.factories import dealer_csv, dealer_line, valid_signup

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def contract_app(postgres_url, shared_zip_directory, tmp_path_factory):
    reset_postgres(postgres_url)
    app = create_app(
        Settings(
            database_url=postgres_url,
            secret_key=TEST_SECRET_KEY,
            instance_path=tmp_path_factory.mktemp("contract"),
        )
    )
    app.config["TESTING"] = True  # no in-process outbox delivery thread outliving the module
    app.extensions["leadsvc.zip_directory"] = shared_zip_directory
    with db.sessionmaker(app)() as session:
        import_dealers(
            session,
            dealer_csv(dealer_line("NY1", "10019"), dealer_line("LA1", "90036", state="CA")),
        )
        keys = {
            role: create_key(session, role, "NY1" if role == "dealer" else None)[1]
            for role in ("dealer", "admin", "compliance")
        }
    client = app.test_client()
    for n, zip_code in enumerate(["10001", "90210", "09001", "10002"]):
        reply = client.post(
            "/api/v1/signups", json=valid_signup(email=f"c{n}@example.com", zip=zip_code)
        )
        assert reply.status_code == 202
    app.config["CONTRACT_KEYS"] = keys
    yield app
    db.engine(app).dispose()


@pytest.fixture(scope="module")
def contract_schema(contract_app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", contract_app)


def _operations() -> list[tuple[str, str]]:
    """Every documented operation, read from an app that is built but never touches a database."""
    app = create_app(
        Settings(
            database_url="sqlite://",
            secret_key=TEST_SECRET_KEY,
            instance_path=Path(tempfile.gettempdir()),
        )
    )
    app.config["TESTING"] = True  # no in-process outbox delivery for this throwaway app
    spec = app.test_client().get("/api/openapi.json").get_json()
    return sorted(
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method != "parameters"
    )


def _key_for(path: str, keys: dict[str, str]) -> str | None:
    if path.startswith("/api/v1/dealer/"):
        return keys["dealer"]
    if path.startswith("/api/v1/admin/"):
        return keys["admin"]
    return None


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda value: value)
def test_every_operation_holds_its_contract(contract_schema, contract_app, method, path):
    operation = contract_schema[path][method]
    key = _key_for(path, contract_app.config["CONTRACT_KEYS"])
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def holds(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    holds()


def test_the_document_lists_every_operation(contract_app):
    spec = contract_app.test_client().get("/api/openapi.json").get_json()
    operations = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method != "parameters"
    }
    routed = {
        (method, re.sub(r"<(?:[^>]*:)?(\w+)>", r"{\1}", rule.rule))
        for rule in contract_app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert {(m, p.replace("{zip_code}", "{zip}")) for m, p in operations} >= {
        (m, p.replace("{zip_code}", "{zip}")) for m, p in routed
    }
    assert ("GET", "/api/v1/dealer/leads") in routed and len(routed) >= 11
