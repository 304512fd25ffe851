"""The API holds its OpenAPI contract: schemathesis over every operation, with every kind of key.

In-process against the app on PostgreSQL, with real keys (dealer, admin, compliance, and none).
Requests are generated from the document's schemas (positive data only), so the server must
accept each one: an answer in the operation's own success range, or 401/403/404 (the key's role,
an id that does not exist). No request may cause a server error, a status code the operation
does not declare, or a content type, body or header that breaks the documented schema.

What a schema cannot say is listed in `DECLARED_REFUSALS`, per operation, with the server's exact
words: values that are well-formed but unknown to the service (a ZIP that is not real, a dealer
code no dealer has, a cursor not issued for the request, a consent text version never published)
and fields that must agree with one another (`from` not after `to`, latitude with longitude).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from leadsvc.app import create_app
from leadsvc.auth.keys import create_key
from leadsvc.dealers.directory import import_dealers
from leadsvc.extensions import db
from leadsvc.input_bounds import WHITESPACE
from leadsvc.settings import Settings
from leadsvc.signups.schemas import ANY_TEXT_SHAPE, has_control_characters
from tests.conftest import TEST_SECRET_KEY, reset_postgres
from tests.factories import dealer_csv, dealer_line, valid_signup

KINDS = ("dealer", "admin", "compliance", "none")
#: Generated requests per operation: with the key it takes (or none, for public operations),
#: and with each other kind of key (refused before the request is read).
EXAMPLES, EXAMPLES_OTHER_KEY = 25, 3
#: Each request these accept rebuilds the routing table (seconds on PostgreSQL): fewer of them.
REBUILDS_ROUTES, EXAMPLES_REBUILDING = (
    {"/api/v1/admin/dealers/{code}", "/api/v1/admin/territories"},
    8,
)
#: Values the service knows, put in place of generated ones in half the requests, so checks
#: after "is this ZIP real?" and "does this dealer exist?" are reached too.
KNOWN_VALUES = {"zip": "10019", "dealer_code": "la1", "consent_text_version": 1}

_ROW = r"\d+: "
_CURSOR = r"This cursor (is not valid|was issued for another request)\."
_UNKNOWN_ZIP = r"ZIP '.*' is not a US ZIP code"
#: Well-formed requests the server refuses for what no schema can say: (status, patterns every
#: field error, or else the message, must match in full), per operation.
DECLARED_REFUSALS = {
    ("POST", "/api/v1/signups"): (
        422,
        [
            r"zip: Please enter a valid Zip code\.",
            r"consent_text_version: Please reload the page.*",
        ],
    ),
    ("GET", "/api/v1/dealer/leads"): (400, [_CURSOR]),
    ("GET", "/api/v1/admin/leads/unassigned"): (400, [_CURSOR]),
    ("GET", "/api/v1/consent/events"): (422, [r"from: from must not be after to"]),
    ("PUT", "/api/v1/admin/leads/{lead_id}/dealer"): (
        422,
        [r"dealer_code: no active dealer with code .*"],
    ),
    ("POST", "/api/v1/admin/holidays"): (422, [r"dealer_code: No dealer with code .*\."]),
    ("POST", "/api/v1/admin/territories"): (
        422,
        [_ROW + _UNKNOWN_ZIP, _ROW + r"no dealer with code .*", _ROW + r"duplicate ZIP .*"],
    ),
    ("PUT", "/api/v1/admin/dealers/{code}"): (
        422,
        [
            _ROW + _UNKNOWN_ZIP,
            _ROW + r"ZIP \d+ has no map position: give latitude and longitude",
            _ROW + r"give both latitude and longitude, or neither",
            _ROW + r"webhook_secret (of at least 16 characters is required with webhook_url"
            r"|given without webhook_url)",
            _ROW + r"webhook_url '.*' is not allowed: .*",
            _ROW + r"opening hours '.*' close before they open",
        ],
    ),
}


def _refusal_lines(response) -> list[str]:
    body = response.json()
    errors = body.get("errors") or {}
    return [f"{key}: {message}" for key, message in errors.items()] or [body.get("message", "")]


@schemathesis.check
def accepts_schema_valid_data(ctx, response, case):
    """positive_data_acceptance, but a declared refusal in the server's own words passes."""
    status, patterns = DECLARED_REFUSALS.get((case.method.upper(), case.path), (None, []))
    if response.status_code == status:
        lines = _refusal_lines(response)
        if all(any(re.fullmatch(p, line, re.DOTALL) for p in patterns) for line in lines):
            return None
    return positive_data_acceptance(ctx, response, case)


@schemathesis.check
def declares_its_status(ctx, response, case):
    """Every status is one the operation lists itself (`default` alone does not count)."""
    declared = DOCUMENT["paths"][case.path][case.method.lower()]["responses"]
    assert str(response.status_code) in declared, (
        f"{case.method} {case.path} answered {response.status_code}, not among {sorted(declared)}"
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    accepts_schema_valid_data,
    declares_its_status,
]


@pytest.fixture(scope="module")
def contract_app(postgres_url, shared_zip_directory, tmp_path_factory):
    reset_postgres(postgres_url)
    app = create_app(
        Settings(
            database_url=postgres_url,
            secret_key=TEST_SECRET_KEY,
            instance_path=tmp_path_factory.mktemp("contract"),
            rate_limits_enabled=False,  # a 429 would pass for acceptance and hide the answer
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


def _document() -> dict:
    """The OpenAPI document, read from an app that is built but never touches a database."""
    app = create_app(
        Settings(
            database_url="sqlite://",
            secret_key=TEST_SECRET_KEY,
            instance_path=Path(tempfile.gettempdir()),
        )
    )
    app.config["TESTING"] = True  # no in-process outbox delivery for this throwaway app
    return app.test_client().get("/api/openapi.json").get_json()


def _operations() -> list[tuple[str, str, str]]:
    """(method, path, the kind of key it takes) for every documented operation."""
    return sorted(
        (method.upper(), path, _kind_for(path) if op.get("security") else "none")
        for path, ops in DOCUMENT["paths"].items()
        for method, op in ops.items()
        if method != "parameters"
    )


DOCUMENT = _document()


def _kind_for(path: str) -> str:
    for prefix, kind in (("dealer", "dealer"), ("admin", "admin"), ("consent", "compliance")):
        if path.startswith(f"/api/v1/{prefix}/"):
            return kind
    raise AssertionError(f"no kind of key is known for {path}")


def _with_known_values(body):
    """The body with the values the service knows in place of generated ones, where it has them."""
    if isinstance(body, list):
        return [_with_known_values(item) for item in body]
    if not isinstance(body, dict):
        return body
    return {
        key: KNOWN_VALUES[key] if key in KNOWN_VALUES else _with_known_values(value)
        for key, value in body.items()
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "path", "own_kind"), _operations(), ids=str)
def test_schema_valid_requests_are_answered_as_documented(
    contract_schema, contract_app, method, path, own_kind, kind
):
    operation = contract_schema[path][method]
    key = contract_app.config["CONTRACT_KEYS"].get(kind)
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    if kind != own_kind:
        examples = EXAMPLES_OTHER_KEY
    else:
        examples = EXAMPLES_REBUILDING if path in REBUILDS_ROUTES else EXAMPLES

    @given(case=operation.as_strategy(GenerationMode.POSITIVE), known=st.booleans())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answered_as_documented(case, known):
        if known and case.body is not None:
            case.body = _with_known_values(case.body)
        case.call_and_validate(headers=headers, checks=CHECKS)

    answered_as_documented()


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


def test_documented_whitespace_is_what_the_server_strips():
    spelled_out = re.compile(f"[{WHITESPACE}]")
    differing = [
        hex(point)
        for point in range(sys.maxunicode + 1)
        if chr(point).isspace() != bool(spelled_out.fullmatch(chr(point)))
    ]
    assert differing == []


def test_documented_form_text_refuses_what_the_form_refuses():
    """Every code point but the lone surrogates (which no pattern can name) is allowed by the
    document's form-text pattern exactly when the form takes it."""
    allowed = re.compile(ANY_TEXT_SHAPE)
    differing = [
        hex(point)
        for point in range(sys.maxunicode + 1)
        if not 0xD800 <= point <= 0xDFFF
        and has_control_characters(chr(point)) == bool(allowed.fullmatch(chr(point)))
    ]
    assert differing == []
