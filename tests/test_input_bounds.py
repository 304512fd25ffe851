"""Bad input at the signup door: a table of requests to the JSON API and to the HTML form, each
with the clear 4xx it must get, and the database exactly as it was before.

The table runs row by row on SQLite (one app and database for the module: each row checks that
its own request changed nothing), and as a whole on PostgreSQL. Each run starts with one person
signed up, so "unchanged" covers an existing lead too (most rows use that person's email).
"""

from __future__ import annotations

import html
import http.client
import json
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from leadsvc.app import create_app
from leadsvc.consent.models import ConsentEvent
from leadsvc.errors import FAILURE_MESSAGE, FIELD_ERRORS_MESSAGE
from leadsvc.extensions import db
from leadsvc.input_bounds import INVALID_JSON_MESSAGE, NOT_UTF8_MESSAGE, TOO_LARGE_MESSAGE
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from leadsvc.settings import Settings
from leadsvc.signups.abuse import form_token
from leadsvc.signups.schemas import (
    INVALID_EMAIL,
    INVALID_ZIP,
    NOT_AN_OBJECT,
    REQUIRED,
    STALE_CONSENT_TEXT,
    UNKNOWN_FIELD,
    UTM_NOT_AN_OBJECT,
)
from leadsvc.signups.views import FORM_ONLY, JSON_ONLY
from tests.conftest import TEST_SECRET_KEY
from tests.factories import valid_signup

API = "/api/v1/signups"
FORM = "/signup"
CAP = 16 * 1024
FIRST = "Please enter a valid first name."
LAST = "Please enter a valid last name."
SOURCE = "Please give a page URL or form id."
TEN_THOUSAND = 10_000
EMAIL = valid_signup()["email"]  # the person signed up before each row


def form_fields(**overrides) -> dict:
    """What the page posts (with a genuine render time), the person's typing changed."""
    data = {
        **valid_signup(),
        "consent_text_version": "1",
        "website": "",
        "form_token": form_token(TEST_SECRET_KEY, now=time.time() - 60),
    }
    data.update(overrides)
    return data


def form_bytes(**overrides) -> bytes:
    """`form_fields` url-encoded as UTF-8; values given as bytes are spliced in as they are."""
    parts = []
    for key, value in form_fields(**overrides).items():
        encoded = (
            value if isinstance(value, bytes) else urllib.parse.quote_plus(str(value)).encode()
        )
        parts.append(key.encode() + b"=" + encoded)
    return b"&".join(parts)


def multipart(fields: dict, boundary: str = "leadsvc-boundary") -> bytes:
    out = b""
    for key, value in fields.items():
        raw = value if isinstance(value, bytes) else str(value).encode()
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            + raw
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=leadsvc-boundary"


@dataclass(frozen=True)
class Bad:
    """One bad request and the reply it must get.

    `field` names where the message shows: the API's `errors` (dotted for nested objects) or the
    form's message under that field; without `field`, the API's `message` or the page's failure
    line says it.
    """

    id: str
    path: str
    status: int
    message: str
    field: str | None = None
    json: object = None
    data: bytes | dict | None = None
    content_type: str | None = None

    def send(self, client):
        if self.json is not None:
            return client.post(self.path, json=self.json)
        data = self.data
        if isinstance(data, dict) and self.content_type is None:
            return client.post(self.path, data=data)
        return client.post(self.path, data=data, content_type=self.content_type)


def api_json(id_, status, message, field=None, **overrides) -> Bad:
    return Bad(id_, API, status, message, field, json=valid_signup(**overrides))


def api_raw(id_, status, message, data: bytes, content_type="application/json", field=None):
    return Bad(id_, API, status, message, field, data=data, content_type=content_type)


def api_field(id_, field_name, message, value) -> Bad:
    return api_json(id_, 422, message, field_name, **{field_name: value})


def form_field(id_, field_name, message, value) -> Bad:
    return Bad(id_, FORM, 422, message, field_name, data=form_fields(**{field_name: value}))


VALID_JSON = json.dumps(valid_signup())
SINGLE_QUOTED = VALID_JSON.replace('"', "'").encode()
LATIN1_JSON = VALID_JSON.replace("Jane", "Jan\xe9").encode("latin-1")
OVERSIZE = "J" * (CAP + 100)

CASES = [
    # --- the JSON API: size, type, encoding, shape ---
    api_json("api-oversize-body", 413, TOO_LARGE_MESSAGE, first_name=OVERSIZE),
    # The type is refused first: the body is never read.
    Bad(
        "api-oversize-text-plain",
        API,
        415,
        JSON_ONLY,
        data=b" " * (CAP + 1),
        content_type="text/plain",
    ),
    api_raw("api-text-plain", 415, JSON_ONLY, VALID_JSON.encode(), "text/plain"),
    api_raw("api-no-content-type", 415, JSON_ONLY, VALID_JSON.encode(), None),
    Bad("api-form-encoded", API, 415, JSON_ONLY, data=valid_signup()),
    api_raw("api-multipart", 415, JSON_ONLY, multipart(valid_signup()), MULTIPART),
    api_raw(
        "api-xml",
        415,
        JSON_ONLY,
        b"<signup><first_name>Jane</first_name></signup>",
        "application/xml",
    ),
    api_raw("api-invalid-json", 400, INVALID_JSON_MESSAGE, VALID_JSON[:-10].encode()),
    api_raw("api-single-quoted-json", 400, INVALID_JSON_MESSAGE, SINGLE_QUOTED),
    api_raw("api-invalid-utf8", 400, NOT_UTF8_MESSAGE, LATIN1_JSON),
    api_raw(
        "api-latin1-charset",
        400,
        NOT_UTF8_MESSAGE,
        LATIN1_JSON,
        "application/json; charset=iso-8859-1",
    ),
    api_raw("api-utf16", 400, NOT_UTF8_MESSAGE, VALID_JSON.encode("utf-16")),
    api_raw(
        "api-deeply-nested",
        400,
        INVALID_JSON_MESSAGE,
        b'{"utm": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ),
    Bad("api-array-body", API, 422, NOT_AN_OBJECT, "_schema", json=[valid_signup()]),
    Bad("api-string-body", API, 422, NOT_AN_OBJECT, "_schema", json=f"Jane Doe {EMAIL}"),
    # --- the JSON API: control and header characters ---
    api_field("api-nul-in-first-name", "first_name", FIRST, "Ja\x00ne"),
    api_field("api-crlf-in-last-name", "last_name", LAST, "Doe\r\nBcc: victim@example.com"),
    api_field("api-crlf-in-email", "email", INVALID_EMAIL, f"{EMAIL}\r\nBcc: victim@example.com"),
    api_field("api-trailing-lf-in-email", "email", INVALID_EMAIL, f"{EMAIL}\n"),
    api_field("api-nul-in-zip", "zip", INVALID_ZIP, "10001\x00"),
    api_field("api-tab-in-first-name", "first_name", FIRST, "Jane\tDoe"),
    api_field("api-line-separator-in-first-name", "first_name", FIRST, "Jane\u2028Doe"),
    api_field("api-c1-control-in-last-name", "last_name", LAST, "Doe\x85"),
    api_field("api-bidi-override-in-last-name", "last_name", LAST, "\u202eeoD"),
    api_raw(
        "api-lone-surrogate-in-first-name",
        422,
        FIRST,
        VALID_JSON.replace("Jane", "Jane\\ud800").encode(),
        field="first_name",
    ),
    api_json(
        "api-crlf-in-utm",
        422,
        "Please enter a valid utm_source.",
        "utm.utm_source",
        utm={"utm_source": "news\r\nSet-Cookie: x=1"},
    ),
    api_raw(
        "api-nul-in-a-field-name",
        422,
        UNKNOWN_FIELD,
        VALID_JSON.replace('"zip"', '"zip": "10001", "zip\\u0000"').encode(),
        field="zip\x00",
    ),
    # --- the JSON API: 10,000-character fields ---
    api_field("api-10k-first-name", "first_name", FIRST, "J" * TEN_THOUSAND),
    api_field("api-10k-last-name", "last_name", LAST, "D" * TEN_THOUSAND),
    api_field("api-10k-email", "email", INVALID_EMAIL, "j" * TEN_THOUSAND + "@example.com"),
    api_field("api-10k-zip", "zip", INVALID_ZIP, "1" * TEN_THOUSAND),
    api_field("api-10k-source", "source", SOURCE, "https://www.miniusa.com/" + "a" * TEN_THOUSAND),
    api_json(
        "api-10k-utm-value",
        422,
        "Please enter a valid utm_campaign.",
        "utm.utm_campaign",
        utm={"utm_campaign": "c" * TEN_THOUSAND},
    ),
    api_json(
        "api-10k-interest",
        422,
        "Please enter a valid interest.",
        "interests.0",
        interests=["i" * TEN_THOUSAND],
    ),
    api_json(
        "api-too-many-interests",
        422,
        "Please choose at most 20 interests.",
        "interests",
        interests=[f"interest {n}" for n in range(500)],
    ),
    # --- the JSON API: arrays, objects, numbers where strings belong ---
    api_field("api-array-first-name", "first_name", FIRST, ["Jane"]),
    api_field("api-array-email", "email", INVALID_EMAIL, [EMAIL, "other@example.com"]),
    api_field("api-object-last-name", "last_name", LAST, {"$ne": ""}),
    api_field("api-number-zip", "zip", INVALID_ZIP, 10001),
    api_field("api-boolean-first-name", "first_name", FIRST, True),
    api_field("api-null-email", "email", REQUIRED, None),
    api_field("api-string-utm", "utm", UTM_NOT_AN_OBJECT, "utm_source=newsletter"),
    api_field("api-string-interests", "interests", "Please give interests as a list.", "cars"),
    api_field("api-string-consent-version", "consent_text_version", STALE_CONSENT_TEXT, "1"),
    api_field("api-huge-consent-version", "consent_text_version", STALE_CONSENT_TEXT, 10**30),
    api_raw(
        "api-nan-consent-version",
        422,
        STALE_CONSENT_TEXT,
        VALID_JSON.replace("{", '{"consent_text_version": NaN, ', 1).encode(),
        field="consent_text_version",
    ),
    api_field("api-unknown-field", "is_admin", UNKNOWN_FIELD, True),
    # --- the JSON API: SQL and script text ---
    api_field("api-sql-in-email", "email", INVALID_EMAIL, f"{EMAIL}' OR '1'='1"),
    api_field("api-sql-in-zip", "zip", INVALID_ZIP, "10001'; DROP TABLE leads; --"),
    api_field("api-sql-in-consent-version", "consent_text_version", STALE_CONSENT_TEXT, "1 OR 1=1"),
    api_field("api-script-in-first-name", "first_name", FIRST, "<script>alert(1)</script>"),
    api_field("api-markup-in-last-name", "last_name", LAST, '<img src=x onerror="alert(1)">'),
    api_field("api-script-url-as-source", "source", SOURCE, "javascript:alert(document.cookie)"),
    api_field("api-url-as-first-name", "first_name", FIRST, "Visit www.spam.example.com"),
    # --- the form: size and encoding ---
    Bad("form-oversize", FORM, 413, TOO_LARGE_MESSAGE, data=form_fields(first_name=OVERSIZE)),
    Bad(
        "form-oversize-multipart",
        FORM,
        413,
        TOO_LARGE_MESSAGE,
        data=multipart(form_fields(first_name=OVERSIZE)),
        content_type=MULTIPART,
    ),
    Bad(
        "form-invalid-utf8-escape",
        FORM,
        400,
        NOT_UTF8_MESSAGE,
        data=form_bytes(first_name=b"Jan%E9"),
        content_type="application/x-www-form-urlencoded",
    ),
    Bad(
        "form-raw-latin1-bytes",
        FORM,
        400,
        NOT_UTF8_MESSAGE,
        data=form_bytes(first_name=b"Jan\xe9"),
        content_type="application/x-www-form-urlencoded",
    ),
    Bad(
        "form-multipart-latin1",
        FORM,
        400,
        NOT_UTF8_MESSAGE,
        data=multipart(form_fields(first_name=b"Jan\xe9")),
        content_type=MULTIPART,
    ),
    # --- the form: bodies no form sends (a valid signup each, with a genuine render time) ---
    Bad("form-json-body", FORM, 415, FORM_ONLY, json=form_fields()),
    Bad("form-text-plain", FORM, 415, FORM_ONLY, data=form_bytes(), content_type="text/plain"),
    Bad("form-no-content-type", FORM, 415, FORM_ONLY, data=form_bytes()),
    # --- the form: a page's form that lost its render time (the bot rule is below) ---
    Bad(
        "form-empty-multipart",
        FORM,
        422,
        REQUIRED,
        "first_name",
        data=multipart({"form_token": form_fields()["form_token"]}),
        content_type=MULTIPART,
    ),
    # --- the form: control characters, long fields, SQL and script text ---
    form_field("form-nul-in-first-name", "first_name", FIRST, "Ja\x00ne"),
    form_field("form-crlf-in-last-name", "last_name", LAST, "Doe\r\nBcc: victim@example.com"),
    form_field("form-crlf-in-email", "email", INVALID_EMAIL, f"{EMAIL}\r\nBcc: victim@example.com"),
    form_field("form-bidi-override-in-first-name", "first_name", FIRST, "Jane\u202e"),
    form_field("form-10k-first-name", "first_name", FIRST, "J" * TEN_THOUSAND),
    form_field("form-10k-email", "email", INVALID_EMAIL, "j" * TEN_THOUSAND + "@example.com"),
    form_field("form-10k-zip", "zip", INVALID_ZIP, "1" * TEN_THOUSAND),
    form_field("form-script-in-first-name", "first_name", FIRST, "<script>alert(1)</script>"),
    form_field("form-sql-in-zip", "zip", INVALID_ZIP, "10001' OR '1'='1"),
    form_field("form-sql-in-email", "email", INVALID_EMAIL, "x@example.com; DROP TABLE leads"),
    Bad(
        "form-sql-in-consent-version",
        FORM,
        422,
        STALE_CONSENT_TEXT,
        data=form_fields(consent_text_version="1; DROP TABLE consent_events"),
    ),
    Bad("form-nul-in-utm", FORM, 422, FAILURE_MESSAGE, data=form_fields(utm_source="news\x00")),
]


def snapshot(session) -> tuple:
    """Everything a signup could write: every lead's columns, consent events, outbox rows."""
    session.rollback()
    session.expire_all()
    return (
        [tuple(row) for row in session.execute(sa.select(Lead.__table__).order_by(Lead.id))],
        [row.id for row in session.scalars(sa.select(ConsentEvent))],
        [(row.id, row.status) for row in session.scalars(sa.select(OutboxMessage))],
    )


def page_messages(text: str) -> dict[str, str]:
    """The messages on a page: under each field (`error-<name>`) and the failure line."""
    found = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r'<p class="error" id="error-(\w+)" role="alert">(.*?)</p>', text, re.S
        )
    }
    failure = re.search(r'<p class="failure"[^>]*>(.*?)</p>', text, re.S)
    found["failure"] = failure.group(1) if failure else None
    return {key: html.unescape(value).strip() if value else value for key, value in found.items()}


def dig(errors: dict, dotted: str):
    value = errors
    for part in [dotted] if dotted in errors else dotted.split("."):
        value = value[part]
    return value


def check(client, session, case: Bad) -> None:
    before = snapshot(session)
    response = case.send(client)

    assert response.status_code == case.status, (case.id, response.get_data()[:300])
    if case.path == API:
        assert response.mimetype == "application/json", case.id
        reply = response.get_json()
        assert reply["code"] == case.status
        if case.field:
            assert reply["message"] == FIELD_ERRORS_MESSAGE, case.id
            assert dig(reply["errors"], case.field) == case.message, (case.id, reply)
        else:
            assert reply["message"] == case.message, (case.id, reply)
    else:
        assert response.mimetype == "text/html", case.id
        messages = page_messages(response.text)
        where = case.field or "failure"
        assert messages.get(where) == case.message, (case.id, messages)
    assert "Traceback" not in response.text
    assert snapshot(session) == before, case.id


@pytest.fixture
def signed_up(client, session):
    """One person already signed up (the rows reuse their address)."""
    assert client.post(API, json=valid_signup()).status_code == 202
    assert len(snapshot(session)[0]) == 1
    return client


def test_the_table_covers_what_issue_7_lists():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 30
    assert {case.path for case in CASES} == {API, FORM}
    assert {case.status for case in CASES} == {400, 413, 415, 422}
    for kind in ("oversize", "text-plain", "utf8", "nul", "crlf", "10k", "array", "sql", "script"):
        assert any(kind in id_ for id_ in ids), kind


@pytest.fixture(scope="module")
def sqlite_table(sqlite_template, shared_zip_directory, tmp_path_factory):
    """One app on a SQLite copy for every row (the conftest `app` is built per test)."""
    folder = tmp_path_factory.mktemp("bad-input")
    shutil.copyfile(sqlite_template, folder / "leadsvc.db")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'leadsvc.db'}",
        secret_key=TEST_SECRET_KEY,
        instance_path=folder / "instance",
        rate_limits_enabled=False,
        min_fill_seconds=0,
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    app.extensions["leadsvc.zip_directory"] = shared_zip_directory
    client = app.test_client()
    assert client.post(API, json=valid_signup()).status_code == 202
    yield app, client
    db.engine(app).dispose()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_its_clear_4xx_and_changes_nothing(sqlite_table, case):
    app, client = sqlite_table
    with db.sessionmaker(app)() as session:
        assert len(snapshot(session)[0]) == 1
        check(client, session, case)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_whole_table_on_postgresql(signed_up, session):
    for case in CASES:
        check(signed_up, session, case)


def test_a_body_at_the_cap_is_read_and_one_byte_more_is_refused(client, session):
    body = VALID_JSON.encode()
    at_cap = body[:-1] + b" " * (CAP - len(body)) + b"}"
    assert len(at_cap) == CAP

    response = client.post(API, data=at_cap, content_type="application/json")
    assert response.status_code == 202
    assert len(snapshot(session)[0]) == 1

    check(client, session, api_raw("one-byte-over", 413, TOO_LARGE_MESSAGE, at_cap + b" "))


def test_an_oversize_body_sent_without_a_length_is_cut_off_with_413(live_server, session):
    """Chunked transfer: no Content-Length to refuse up front; reading stops at the cap."""
    host, port = live_server.removeprefix("http://").split(":")
    body = json.dumps(valid_signup(first_name="J" * (CAP * 2))).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        chunks = iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
        connection.request(
            "POST",
            API,
            body=chunks,
            encode_chunked=True,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        reply = json.loads(response.read())
    finally:
        connection.close()

    assert response.status == 413
    assert reply["message"] == TOO_LARGE_MESSAGE
    assert snapshot(session) == ([], [], [])


def test_a_streamed_form_cut_off_at_the_cap_is_not_taken_for_a_whole_one(live_server, session):
    """Werkzeug stops reading a chunked body at the cap; the form's fields before the cut make
    a complete signup (the form ignores fields it does not know). The service must refuse the
    body, not store what came in the first 16 KB."""
    host, port = live_server.removeprefix("http://").split(":")
    body = form_bytes() + b"&padding=" + b"p" * CAP
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "POST",
            FORM,
            body=iter([body[i : i + 1000] for i in range(0, len(body), 1000)]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        page = response.read().decode()
    finally:
        connection.close()

    assert response.status == 413
    assert page_messages(page)["failure"] == TOO_LARGE_MESSAGE
    assert snapshot(session) == ([], [], [])


def test_a_streamed_body_under_the_cap_is_read_whole(live_server, session):
    host, port = live_server.removeprefix("http://").split(":")
    body = json.dumps(valid_signup()).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "POST",
            API,
            body=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 202
    assert len(snapshot(session)[0]) == 1


def test_a_person_can_still_type_accents_quotes_and_non_latin_names(client, session):
    """The bounds refuse bytes and controls, not people: UTF-8 text of every kind passes."""
    names = [
        ("Zoë", "O'Brien-Núñez"),
        ("José", "d'Avila"),
        ("Łukasz", "Żółć"),
        ("Mário", "Sá"),
        ("María José", "García Márquez"),
        ("Björk", "Guðmundsdóttir"),
    ]
    for n, (first, last) in enumerate(names):
        assert (
            client.post(
                API, json=valid_signup(first_name=first, last_name=last, email=f"p{n}@example.com")
            ).status_code
            == 202
        )
    data = urllib.parse.urlencode(
        form_fields(first_name="Chloé", last_name="Brontë", email="form@example.com")
    ).encode()
    form = client.post(FORM, data=data, content_type="application/x-www-form-urlencoded")
    assert form.status_code == 200
    upload = client.post(
        FORM,
        data=multipart(form_fields(first_name="Søren", email="mp@example.com")),
        content_type=MULTIPART,
    )
    assert upload.status_code == 200
    stored = {row[0] for row in session.execute(sa.select(Lead.first_name))}
    assert stored == {first for first, _ in names} | {"Chloé", "Søren"}


def test_sql_shaped_text_in_a_name_field_is_only_ever_data(client, session):
    """A name may hold quotes and semicolons (O'Brien); statements are parameterised, so such a
    name is stored as typed and every table is still there."""
    name = "Robert'); DROP TABLE leads;--"
    assert client.post(API, json=valid_signup(last_name=name)).status_code == 202
    assert session.scalar(sa.select(Lead.last_name)) == name
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 1


def test_an_unreadable_body_is_not_a_server_error_on_any_endpoint(client, session):
    """The body checks hold for every route, not only the signup door."""
    for path in ("/api/v1/admin/dealers", "/api/v1/dealer/leads/ack", "/unsubscribe/some-token"):
        nested = client.post(path, data=b"[" * 5000 + b"]" * 5000, content_type="application/json")
        assert nested.status_code == 400, path
        latin1 = client.post(
            path,
            data=b"List-Unsubscribe=One-Click&x=\xe9",
            content_type="application/x-www-form-urlencoded",
        )
        assert latin1.status_code == 400, path
