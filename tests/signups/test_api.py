"""The JSON signup API (`POST /api/v1/signups`), on both databases.

Every test checks the reply (status and exact body) and what the database holds afterwards.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import dns.resolver
import pytest
import sqlalchemy as sa

from leadsvc.app import create_app
from leadsvc.consent.models import ConsentEvent, ConsentText
from leadsvc.errors import FAILURE_MESSAGE, FIELD_ERRORS_MESSAGE
from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from leadsvc.settings import Settings
from leadsvc.signups.schemas import (
    INVALID_EMAIL,
    INVALID_ZIP,
    NOT_AN_OBJECT,
    REQUIRED,
    STALE_CONSENT_TEXT,
    UNKNOWN_FIELD,
    UTM_NOT_AN_OBJECT,
)
from tests.factories import valid_signup

URL = "/api/v1/signups"
RECEIVED = {
    "status": "received",
    "message": (
        "We've received your information, so keep an eye out for communications from MINI USA."
    ),
}
INVALID_FIRST = "Please enter a valid first name."
INVALID_LAST = "Please enter a valid last name."
INVALID_SOURCE = "Please give a page URL or form id."
#: Leave the field out of the body altogether.
ABSENT = object()


def post(client, body, **kwargs):
    return client.post(URL, json=body, **kwargs)


def signup_with(**overrides) -> dict:
    body = valid_signup(**{k: v for k, v in overrides.items() if v is not ABSENT})
    for key in [k for k, v in overrides.items() if v is ABSENT]:
        del body[key]
    return body


def leads(session) -> list[Lead]:
    session.rollback()  # see what requests committed since the last look
    return list(session.scalars(sa.select(Lead).order_by(Lead.id)))


def events(session) -> list[ConsentEvent]:
    session.rollback()
    return list(session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)))


def stored_counts(session) -> tuple[int, int]:
    session.rollback()
    count = sa.select(sa.func.count())
    return (
        session.scalar(count.select_from(Lead)),
        session.scalar(count.select_from(ConsentEvent)),
    )


def field_errors(errors: dict) -> dict:
    return {
        "code": 422,
        "status": "Unprocessable Entity",
        "message": FIELD_ERRORS_MESSAGE,
        "errors": errors,
    }


def assert_refused(response, session, errors: dict) -> None:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json() == field_errors(errors)
    assert stored_counts(session) == (0, 0)


# --- A signup that is received ---------------------------------------------------------------


def test_signup_is_received_and_stores_the_lead_and_its_consent_event(client, session):
    started = datetime.now(UTC)
    response = post(
        client,
        valid_signup(
            zip="10001-1234",
            source="https://www.miniusa.com/",
            utm={"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"},
            interests=["Cooper", "Countryman"],
            consent_text_version=1,
        ),
        headers={"User-Agent": "Mozilla/5.0 (test)"},
    )

    assert response.status_code == 202
    assert response.get_json() == RECEIVED
    [lead] = leads(session)
    assert (
        lead.email,
        lead.email_key,
        lead.email_as_typed,
        lead.first_name,
        lead.last_name,
        lead.zip5,
        lead.zip4,
        lead.source,
        lead.utm,
        lead.interests,
        lead.consent_status,
        lead.consent_text_version,
        lead.signup_count,
    ) == (
        "jane.doe@example.com",
        "jane.doe@example.com",
        "jane.doe@example.com",
        "Jane",
        "Doe",
        "10001",
        "1234",
        "https://www.miniusa.com/",
        {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"},
        ["Cooper", "Countryman"],
        "given",
        1,
        1,
    )
    assert started - timedelta(seconds=5) <= lead.created_at <= datetime.now(UTC)
    assert lead.updated_at == lead.created_at
    [event] = events(session)
    assert (
        event.lead_id,
        event.subject,
        event.event_type,
        event.text_version,
        event.ip,
        event.user_agent,
        event.source_url,
        event.request_id,
    ) == (
        lead.id,
        "jane.doe@example.com",
        "given",
        1,
        "127.0.0.1",
        "Mozilla/5.0 (test)",
        "https://www.miniusa.com/",
        response.headers["X-Request-ID"],
    )
    assert started - timedelta(seconds=5) <= event.occurred_at <= datetime.now(UTC)
    assert event.occurred_at.tzinfo is not None


def test_minimal_signup_stores_no_optional_values_and_pins_the_active_consent_text(client, session):
    response = post(client, valid_signup())
    assert (response.status_code, response.get_json()) == (202, RECEIVED)
    [lead] = leads(session)
    assert (lead.zip4, lead.source, lead.utm, lead.interests) == (None, None, None, None)
    assert lead.consent_text_version == 1
    [event] = events(session)
    assert (event.text_version, event.source_url) == (1, None)


def test_reply_is_the_same_whether_the_email_is_new_or_already_known(client, session):
    first = post(client, valid_signup())
    second = post(client, valid_signup(first_name="Janet"))
    other = post(client, valid_signup(email="someone.else@example.com"))
    assert first.status_code == second.status_code == other.status_code == 202
    assert first.get_json() == second.get_json() == other.get_json() == RECEIVED
    assert first.get_data() == second.get_data() == other.get_data()
    assert stored_counts(session) == (2, 3)


def test_optional_fields_sent_as_null_or_blank_count_as_not_given(client, session):
    body = valid_signup(
        source=" ",
        utm={"utm_source": "", "utm_term": None},
        interests=None,
        consent_text_version=None,
    )
    response = post(client, body)
    assert (response.status_code, response.get_json()) == (202, RECEIVED)
    [lead] = leads(session)
    assert (lead.source, lead.utm, lead.interests, lead.consent_text_version) == (
        None,
        None,
        None,
        1,
    )


def test_names_are_trimmed_before_storing(client, session):
    response = post(client, valid_signup(first_name="  Jane ", last_name="\u00a0Doe-Smith  "))
    assert response.status_code == 202
    [lead] = leads(session)
    assert (lead.first_name, lead.last_name) == ("Jane", "Doe-Smith")


REAL_NAMES = [
    ("J" * 50, "D" * 50),
    ("  " + "J" * 50 + "  ", "D" * 50 + " "),
    ("José", "Núñez"),
    ("Zoë", "O'Brien-Smith"),
    ("Mary Ann", "St. John"),
    ("Jean-Luc", "de la Cruz"),
    ("美咲", "佐藤"),
    ("J.", "Doe Jr."),
]


def test_real_names_up_to_50_characters_are_accepted(client, session):
    for n, (first_name, last_name) in enumerate(REAL_NAMES):
        body = valid_signup(first_name=first_name, last_name=last_name, email=f"p{n}@example.com")
        response = post(client, body)
        assert (response.status_code, response.get_json()) == (202, RECEIVED), first_name
    assert [(lead.first_name, lead.last_name) for lead in leads(session)] == [
        (first.strip(), last.strip()) for first, last in REAL_NAMES
    ]


EMAIL_STORAGE = [
    # typed, leads.email (normalised), leads.email_key, leads.email_as_typed
    (
        "  Jane.Doe@Example.COM ",
        "Jane.Doe@example.com",
        "jane.doe@example.com",
        "Jane.Doe@Example.COM",
    ),
    ("用户@例子.广告", "用户@例子.广告", "用户@例子.广告", "用户@例子.广告"),
    ("jane@bücher.de", "jane@bücher.de", "jane@bücher.de", "jane@bücher.de"),
    ("JOHN@BÜCHER.DE", "JOHN@bücher.de", "john@bücher.de", "JOHN@BÜCHER.DE"),
    (
        "jane.doe+mini@example.com",
        "jane.doe+mini@example.com",
        "jane.doe+mini@example.com",
        "jane.doe+mini@example.com",
    ),
]


def test_email_is_stored_normalised_as_typed_and_lower_cased(client, session):
    for typed, *_ in EMAIL_STORAGE:
        response = post(client, valid_signup(email=typed))
        assert (response.status_code, response.get_json()) == (202, RECEIVED), typed
    assert [(lead.email, lead.email_key, lead.email_as_typed) for lead in leads(session)] == [
        tuple(row[1:]) for row in EMAIL_STORAGE
    ]
    assert [event.subject for event in events(session)] == [row[1] for row in EMAIL_STORAGE]


def test_address_on_a_domain_that_does_not_exist_is_accepted_without_any_dns_lookup(
    app, client, session, monkeypatch
):
    def no_dns(*args, **kwargs):
        raise AssertionError("the signup queried DNS with deliverability checks off")

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", no_dns)
    assert app.extensions["leadsvc.email_checker"].check_deliverability is False
    response = post(client, valid_signup(email="jane@no-such-domain-zz9.com"))
    assert (response.status_code, response.get_json()) == (202, RECEIVED)
    assert [lead.email for lead in leads(session)] == ["jane@no-such-domain-zz9.com"]


TYPOS = [
    ("jane@gmial.com", "jane@gmail.com"),
    ("Jane.Doe@hotmial.com", "Jane.Doe@hotmail.com"),
    ("john@yaho.com", "john@yahoo.com"),
    ("ann@gmail.con", "ann@gmail.com"),
    ("bob@GMIAL.COM", "bob@gmail.com"),
]


def test_likely_provider_typo_gets_a_suggestion_and_is_still_stored_as_typed(client, session):
    replies = {typed: post(client, valid_signup(email=typed)) for typed, _ in TYPOS}
    assert {typed: (r.status_code, r.get_json()) for typed, r in replies.items()} == {
        typed: (202, {**RECEIVED, "suggestion": suggestion}) for typed, suggestion in TYPOS
    }
    assert [(lead.email_as_typed, lead.email_key) for lead in leads(session)] == [
        (typed, typed.lower()) for typed, _ in TYPOS
    ]


def test_known_provider_gets_no_suggestion(client, session):
    addresses = ["a@mail.com", "b@gmx.com", "c@yahoo.com", "d@gmail.com", "e@example.com"]
    replies = {address: post(client, valid_signup(email=address)) for address in addresses}
    assert {a: (r.status_code, r.get_json()) for a, r in replies.items()} == {
        address: (202, RECEIVED) for address in addresses
    }
    assert [lead.email for lead in leads(session)] == addresses


REAL_ZIPS = [
    ("10001", "10001", None),  # New York
    ("90210", "90210", None),  # Beverly Hills
    ("60601", "60601", None),  # Chicago
    ("02108", "02108", None),  # Boston: the leading zero is kept
    ("99501", "99501", None),  # Anchorage
    ("09001", "09001", None),  # military (APO/FPO)
    ("12345", "12345", None),  # Schenectady
    ("12345-6789", "12345", "6789"),
    ("12345 6789", "12345", "6789"),
    ("  60601-1234  ", "60601", "1234"),
    (" 02108 ", "02108", None),
]


def test_real_zip_code_is_accepted_and_stored_as_zip5_and_zip4(client, session):
    for n, (typed, _, _) in enumerate(REAL_ZIPS):
        response = post(client, valid_signup(zip=typed, email=f"p{n}@example.com"))
        assert (response.status_code, response.get_json()) == (202, RECEIVED), typed
    assert [(lead.zip5, lead.zip4) for lead in leads(session)] == [
        (zip5, zip4) for _, zip5, zip4 in REAL_ZIPS
    ]


def test_utm_and_interests_are_stored_as_given(client, session):
    utm = {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "mini-2025",
        "utm_term": "electric mini",
        "utm_content": "ad-1",
    }
    interests = ["Electric", "John Cooper Works", "Test drive"]
    response = post(client, valid_signup(utm=utm, interests=interests, source="footer-form"))
    assert (response.status_code, response.get_json()) == (202, RECEIVED)
    [lead] = leads(session)
    assert (lead.utm, lead.interests, lead.source) == (utm, interests, "footer-form")


# --- One lead per person ---------------------------------------------------------------------


def test_same_address_in_other_letter_case_updates_the_one_lead_and_adds_a_consent_event(
    client, session
):
    first = post(client, valid_signup(email="Jane.Doe@Example.com", zip="10001"))
    [before] = leads(session)
    second = post(
        client,
        valid_signup(
            email="jane.doe@example.com",
            first_name="Janet",
            last_name="Doe-Smith",
            zip="90210-1234",
            utm={"utm_source": "facebook"},
            interests=["Cooper"],
            source="https://www.miniusa.com/models",
        ),
    )

    assert first.get_json() == second.get_json() == RECEIVED
    [after] = leads(session)
    assert after.id == before.id
    assert (
        after.email,
        after.email_key,
        after.email_as_typed,
        after.first_name,
        after.last_name,
        after.zip5,
        after.zip4,
        after.utm,
        after.interests,
        after.source,
        after.signup_count,
    ) == (
        "jane.doe@example.com",
        "jane.doe@example.com",
        "jane.doe@example.com",
        "Janet",
        "Doe-Smith",
        "90210",
        "1234",
        {"utm_source": "facebook"},
        ["Cooper"],
        "https://www.miniusa.com/models",
        2,
    )
    assert after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    assert [(e.lead_id, e.subject, e.event_type) for e in events(session)] == [
        (before.id, "Jane.Doe@example.com", "given"),
        (before.id, "jane.doe@example.com", "given"),
    ]


def test_every_repeat_signup_counts(client, session):
    for typed in ["jane@example.com", "JANE@example.com", "Jane@EXAMPLE.com", "jane@example.com"]:
        assert post(client, valid_signup(email=typed)).status_code == 202
    [lead] = leads(session)
    assert lead.signup_count == 4
    assert len(events(session)) == 4


def test_dots_and_plus_tags_are_kept_so_those_addresses_are_different_people(client, session):
    addresses = ["jane.doe+mini@x.com", "janedoe@x.com", "jane.doe@x.com", "janedoe+mini@x.com"]
    for address in addresses:
        assert post(client, valid_signup(email=address)).status_code == 202
    assert [lead.email_key for lead in leads(session)] == addresses
    assert [event.subject for event in events(session)] == addresses


# --- How consent was given -------------------------------------------------------------------


def test_consent_source_is_the_source_field_rather_than_the_referer(client, session):
    response = post(
        client,
        valid_signup(source="https://www.miniusa.com/stay-in-the-loop"),
        headers={"Referer": "https://elsewhere.example.com/"},
    )
    assert response.status_code == 202
    [event] = events(session)
    assert event.source_url == "https://www.miniusa.com/stay-in-the-loop"


def test_consent_source_falls_back_to_the_referer(client, session):
    response = post(client, valid_signup(), headers={"Referer": "https://www.miniusa.com/page"})
    assert response.status_code == 202
    [event] = events(session)
    assert event.source_url == "https://www.miniusa.com/page"
    [lead] = leads(session)
    assert lead.source is None


def test_consent_records_the_client_address_and_browser(client, session):
    response = post(client, valid_signup(), headers={"User-Agent": "MINI-Test-Browser/1.0"})
    assert response.status_code == 202
    [event] = events(session)
    assert (event.ip, event.user_agent) == ("127.0.0.1", "MINI-Test-Browser/1.0")


def test_valid_inbound_request_id_is_kept_echoed_and_recorded(client, session):
    response = post(client, valid_signup(), headers={"X-Request-ID": "req-2025.abc_123"})
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "req-2025.abc_123"
    [event] = events(session)
    assert event.request_id == "req-2025.abc_123"


def test_missing_or_invalid_request_id_is_replaced_by_a_generated_one(client, session):
    offered = [None, "bad id!", "short", "x" * 65, "<script>", "a b c d e f g h"]
    request_ids = []
    for value in offered:
        headers = {"X-Request-ID": value} if value is not None else {}
        response = post(client, valid_signup(), headers=headers)
        assert response.status_code == 202
        request_ids.append(response.headers["X-Request-ID"])
    for value, request_id in zip(offered, request_ids, strict=True):
        assert request_id != value
        assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", request_id), request_id
    assert len(set(request_ids)) == len(offered)
    assert [event.request_id for event in events(session)] == request_ids


def test_each_request_gets_its_own_request_id(client, session):
    ids = {post(client, valid_signup()).headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert {event.request_id for event in events(session)} == ids


def test_consent_event_pins_the_text_version_the_form_showed(client, session):
    # Version 2 is published and becomes active; a form still showing version 1 posts it.
    session.execute(sa.update(ConsentText).values(active=False))
    session.add(ConsentText(version=2, text="A newer notice.", sha256="0" * 64, active=True))
    session.commit()

    assert post(client, valid_signup(consent_text_version=1)).status_code == 202
    assert post(client, valid_signup(email="john@example.com")).status_code == 202
    second_version = valid_signup(email="ann@example.com", consent_text_version=2)
    assert post(client, second_version).status_code == 202

    assert [(e.subject, e.text_version) for e in events(session)] == [
        ("jane.doe@example.com", 1),
        ("john@example.com", 2),
        ("ann@example.com", 2),
    ]
    assert [lead.consent_text_version for lead in leads(session)] == [1, 2, 2]


# --- Refused signups: field errors in the form's words, and nothing stored --------------------
#
# Each table row is one kind of bad input with a few examples; every example is posted on its
# own and must get exactly the 422 body shown, and nothing may be stored.

REQUIRED_FIELDS = ["first_name", "last_name", "email", "zip"]


def refusals(client, field: str, values: list) -> dict:
    """Post one signup per bad value of `field`; {repr(value): (status, body)}."""
    replies = {}
    for value in values:
        response = post(client, signup_with(**{field: value}))
        replies[repr(value)] = (response.status_code, response.get_json())
    return replies


def assert_all_refused(client, session, field: str, values: list, errors) -> None:
    expected = errors if isinstance(errors, dict) else {field: errors}
    assert refusals(client, field, values) == {
        repr(value): (422, field_errors(expected)) for value in values
    }
    assert stored_counts(session) == (0, 0)


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_or_null_required_field_is_refused_as_required(client, session, field):
    assert_all_refused(client, session, field, [ABSENT, None], REQUIRED)


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_blank_name_is_refused_as_required(client, session, field):
    blanks = ["", "   ", "\t", " \r\n ", "\u00a0\u3000"]
    assert_all_refused(client, session, field, blanks, REQUIRED)


def test_empty_body_lists_every_required_field(client, session):
    response = post(client, {})
    assert_refused(response, session, {field: REQUIRED for field in REQUIRED_FIELDS})


def test_every_bad_field_is_reported_at_once(client, session):
    body = {"first_name": " ", "last_name": "http://x", "email": "jane@", "zip": "00000"}
    response = post(client, body)
    assert_refused(
        response,
        session,
        {
            "first_name": REQUIRED,
            "last_name": INVALID_LAST,
            "email": INVALID_EMAIL,
            "zip": INVALID_ZIP,
        },
    )


BAD_NAMES = {
    "longer than 50 characters": ["J" * 51, " " + "J" * 51 + " ", "Jo" * 26],
    "control characters": [
        "Ja\x00ne",
        "Jane\r",
        "Jane\n",
        "\nJane",
        "Ja\r\nne",
        "Ja\tne",
        "Jane\t",
        "Ja\x1bne",
        "Ja\x7fne",
        "Ja\u2028ne",
        "\u202eenaJ",
    ],
    "urls": [
        "http://x",
        "https://miniusa.com",
        "www.x",
        "Visit www.spam",
        "spam.com",
        "SPAM.COM",
        "buy-now.ru",
        "Jane ftp://x",
    ],
    "email addresses": ["jane@example", "@jane", "Jane@"],
    "markup": ["<b>Jane</b>", "<script>", "Jane>", "Jane<"],
}


@pytest.mark.parametrize("kind", list(BAD_NAMES))
@pytest.mark.parametrize(
    ("field", "message"),
    [("first_name", INVALID_FIRST), ("last_name", INVALID_LAST)],
    ids=["first_name", "last_name"],
)
def test_invalid_name_is_refused(client, session, field, message, kind):
    assert_all_refused(client, session, field, BAD_NAMES[kind], message)


BAD_EMAILS = {
    "blank": ["", "   "],
    "no mailbox or no domain": ["jane", "jane@", "@example.com", "jane@@example.com"],
    "domain without a dot or reserved": ["jane@example", "jane@localhost", "jane@example.test"],
    "dots in the wrong place": ["jane..doe@example.com", ".jane@example.com", "jane@example.com."],
    "spaces, quotes, display names, IP literals": [
        "jane doe@example.com",
        '"jane"@example.com',
        "Jane Doe <jane@example.com>",
        "jane@[127.0.0.1]",
    ],
    "control characters": [
        "jane\x00@example.com",
        "jane@example.com\n",
        "jane@example.com\r\nBcc: x@example.com",
    ],
    "too long": ["jane@" + ".".join(["d" * 60] * 5) + ".com", "j" * 310 + "@example.com"],
}


@pytest.mark.parametrize("kind", list(BAD_EMAILS))
def test_invalid_email_is_refused(client, session, kind):
    assert_all_refused(client, session, "email", BAD_EMAILS[kind], INVALID_EMAIL)


BAD_ZIPS = {
    "blank": ["", "   "],
    "not a real ZIP": ["00000", "99999"],
    "wrong length": ["1234", "123456", "12345-67", "12345-", "12345-67890", "1" * 40],
    "not digits": ["abcde", "1000l", "１０００１", "10001-１２３４"],
    "wrong separator": ["12345--6789", "12345_6789", "12345/6789", "10001 1234 5678"],
    "control characters": ["10001\n", "10001\t", "\x0010001"],
}


@pytest.mark.parametrize("kind", list(BAD_ZIPS))
def test_invalid_zip_code_is_refused(client, session, kind):
    assert_all_refused(client, session, "zip", BAD_ZIPS[kind], INVALID_ZIP)


WRONG_TYPES = [5, 0, 1.5, True, False, ["Jane"], [], {"name": "Jane"}, {}]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("first_name", INVALID_FIRST),
        ("last_name", INVALID_LAST),
        ("email", INVALID_EMAIL),
        ("zip", INVALID_ZIP),
    ],
    ids=["first_name", "last_name", "email", "zip"],
)
def test_number_array_or_object_where_text_belongs_is_refused_with_the_invalid_message(
    client, session, field, message
):
    # A ZIP sent as a JSON number (10001) is refused too: 02108 would lose its leading zero.
    values = [*WRONG_TYPES, 10001 if field == "zip" else 12345]
    assert_all_refused(client, session, field, values, message)


def test_unknown_fields_are_refused(client, session):
    cases = [
        ({"phone": "555-0100"}, {"phone": UNKNOWN_FIELD}),
        ({"utm_source": "google"}, {"utm_source": UNKNOWN_FIELD}),
        (
            {"consent": True, "Email": "x@example.com"},
            {"consent": UNKNOWN_FIELD, "Email": UNKNOWN_FIELD},
        ),
        ({"id": 1, "signup_count": 5}, {"id": UNKNOWN_FIELD, "signup_count": UNKNOWN_FIELD}),
    ]
    replies = [post(client, {**valid_signup(), **extra}) for extra, _ in cases]
    assert [(r.status_code, r.get_json()) for r in replies] == [
        (422, field_errors(errors)) for _, errors in cases
    ]
    assert stored_counts(session) == (0, 0)


@pytest.mark.parametrize(
    ("utm", "errors"),
    [
        ({"utm_id": "123"}, {"utm_id": UNKNOWN_FIELD}),
        ({"utm_source": "google", "gclid": "abc"}, {"gclid": UNKNOWN_FIELD}),
        (
            {"utm_source": 5, "utm_medium": ["cpc"]},
            {
                "utm_source": "Please enter a valid utm_source.",
                "utm_medium": "Please enter a valid utm_medium.",
            },
        ),
        (
            {"utm_campaign": "x" * 201, "utm_term": "a\nb"},
            {
                "utm_campaign": "Please enter a valid utm_campaign.",
                "utm_term": "Please enter a valid utm_term.",
            },
        ),
    ],
    ids=["unknown-key", "unknown-key-beside-a-known-one", "wrong-types", "too-long-or-control"],
)
def test_bad_utm_is_refused(client, session, utm, errors):
    response = post(client, valid_signup(utm=utm))
    assert_refused(response, session, {"utm": errors})


def test_utm_that_is_not_an_object_is_refused(client, session):
    values = ["utm_source=google", ["google"], 5, True]
    assert_all_refused(client, session, "utm", values, UTM_NOT_AN_OBJECT)


BAD_INTERESTS = [
    ("Cooper", "Please give interests as a list."),
    ({"model": "Cooper"}, "Please give interests as a list."),
    (5, "Please give interests as a list."),
    ([5], {"0": "Please enter a valid interest."}),
    (["Cooper", ["nested"]], {"1": "Please enter a valid interest."}),
    (["Cooper", ""], {"1": "Please enter a valid interest."}),
    (["x" * 51], {"0": "Please enter a valid interest."}),
    (["a\x00b"], {"0": "Please enter a valid interest."}),
    ([f"interest {n}" for n in range(21)], "Please choose at most 20 interests."),
]


def test_bad_interests_are_refused(client, session):
    replies = [post(client, valid_signup(interests=value)) for value, _ in BAD_INTERESTS]
    assert [(r.status_code, r.get_json()) for r in replies] == [
        (422, field_errors({"interests": error})) for _, error in BAD_INTERESTS
    ]
    assert stored_counts(session) == (0, 0)


def test_unknown_consent_text_version_is_refused(client, session):
    values = [2, 0, -1, 1_000_001, "1", 1.5, True, [1], {"version": 1}]
    assert_all_refused(client, session, "consent_text_version", values, STALE_CONSENT_TEXT)


def test_source_that_is_neither_a_page_url_nor_a_form_id_is_refused(client, session):
    values = [
        "not a url",
        "javascript:alert(1)",
        "https://x.example.com/a page",
        5,
        ["https://x"],
        "https://" + "x" * 2048,
        "form\nid",
    ]
    assert_all_refused(client, session, "source", values, INVALID_SOURCE)


# --- Bodies that are not a JSON object -------------------------------------------------------


def assert_error_reply(response, code: int, status: str) -> None:
    assert response.status_code == code
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"code", "status", "message"}
    assert (body["code"], body["status"]) == (code, status)
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_body_that_is_not_json_is_refused_with_415(client, session):
    form = {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "zip": "10001"}
    replies = [
        client.post(URL, data=form),
        client.post(URL, data=json.dumps(form), content_type="text/plain"),
        client.post(URL, data="first_name=Jane", content_type="application/x-www-form-urlencoded"),
        client.post(URL),
    ]
    for response in replies:
        assert_error_reply(response, 415, "Unsupported Media Type")
    assert stored_counts(session) == (0, 0)


def test_malformed_json_is_refused_with_400(client, session):
    for data in [
        '{"first_name": "Jane",',
        "{'first_name': 'Jane'}",
        "not json",
        '{"a": 1}}',
        b"\xff\xfe\x00",
    ]:
        response = client.post(URL, data=data, content_type="application/json")
        assert_error_reply(response, 400, "Bad Request")
    assert stored_counts(session) == (0, 0)


def test_json_that_is_not_an_object_is_refused_with_422(client, session):
    array = json.dumps([valid_signup()])
    for data in [array, "[]", '"jane@example.com"', "42", "null", "true"]:
        response = client.post(URL, data=data, content_type="application/json")
        assert (response.status_code, response.get_json()) == (
            422,
            field_errors({"_schema": NOT_AN_OBJECT}),
        ), data
    assert stored_counts(session) == (0, 0)


def test_get_is_not_allowed(client):
    response = client.get(URL)
    assert_error_reply(response, 405, "Method Not Allowed")


# --- When things go wrong on our side ---------------------------------------------------------


@pytest.fixture
def unreachable_database_client(tmp_path, shared_zip_directory):
    """An app whose database does not answer (nothing listens on port 1)."""
    app = create_app(
        Settings(
            database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
            secret_key="x" * 40,
            instance_path=tmp_path,
        )
    )
    app.config["TESTING"] = True
    app.extensions["leadsvc.zip_directory"] = shared_zip_directory
    yield app.test_client()
    db.engine(app).dispose()


@pytest.mark.parametrize(
    "body", [valid_signup(), valid_signup(consent_text_version=1)], ids=["plain", "with-version"]
)
def test_unreachable_database_answers_503_with_the_failure_message(
    unreachable_database_client, body
):
    response = unreachable_database_client.post(URL, json=body)
    assert response.status_code == 503
    assert response.get_json() == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "Sorry about this. Something went wrong, please come back and try again later.",
    }
    assert FAILURE_MESSAGE == response.get_json()["message"]
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "psycopg", "OperationalError", "127.0.0.1:1", "jane"):
        assert leak not in text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pooled_connection_closed_by_a_database_restart_does_not_fail_the_signup(
    app, client, database_url
):
    """PostgreSQL restarted (or failed over) while the web worker sat idle: every connection it
    holds in its pool is dead, and the next signup must not be the one that finds out with a
    503."""
    engine = db.engine(app)
    engine.dispose()
    assert post(client, valid_signup(email="before@example.com")).status_code == 202
    with engine.connect() as connection, engine.connect() as another:  # two in the pool
        connection.scalar(sa.text("SELECT 1"))
        another.scalar(sa.text("SELECT 1"))
    outside = sa.create_engine(database_url)
    try:
        with outside.begin() as connection:
            killed = connection.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = 'leadsvc'"
                )
            )
        assert killed >= 2  # every pooled connection
        response = post(client, valid_signup(email="after@example.com"))
        assert response.status_code == 202, response.get_json()
        with outside.connect() as connection:
            emails = connection.scalars(sa.text("SELECT email FROM leads ORDER BY id")).all()
            events = connection.scalar(sa.text("SELECT count(*) FROM consent_events"))
        assert (emails, events) == (["before@example.com", "after@example.com"], 2)
    finally:
        outside.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_gone_after_warm_up_answers_503_in_the_forms_words(app, client, database_url):
    """The caches (routing table, consent text) are warm, so the new-lead statement is the first
    to need the database; when no connection can be had, the reply is the form's 503, not a 500
    (psycopg's own error, which the pool does not wrap, must not escape)."""
    from sqlalchemy.orm import sessionmaker

    from leadsvc.db import create_db_engine

    assert post(client, valid_signup(email="before@example.com")).status_code == 202
    working = app.extensions[db.key]
    gone = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    app.extensions[db.key] = (gone, sessionmaker(gone, expire_on_commit=False))
    try:
        response = post(client, valid_signup(email="after@example.com"))
    finally:
        app.extensions[db.key] = working
        gone.dispose()
    assert response.status_code == 503
    assert response.get_json()["message"] == FAILURE_MESSAGE
    assert "Retry-After" in response.headers


def test_unexpected_failure_answers_500_without_details(client, session, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom jane@example.com")

    monkeypatch.setattr("leadsvc.signups.views.capture_signup", boom)
    response = post(client, valid_signup(email="jane@example.com"))
    assert response.status_code == 500
    assert response.get_json() == {
        "code": 500,
        "status": "Internal Server Error",
        "message": FAILURE_MESSAGE,
    }
    text = response.get_data(as_text=True)
    for leak in ("boom", "Traceback", "RuntimeError", "jane@example.com"):
        assert leak not in text
    assert stored_counts(session) == (0, 0)


def test_the_control_character_pattern_is_exactly_the_refused_categories():
    """Form text refuses Unicode's controls (Cc), line and paragraph separators (Zl, Zp),
    surrogates (Cs) and the bidi controls: the one pattern the schema uses says so for every
    code point, no more and no less."""
    import sys
    import unicodedata

    from leadsvc.signups.schemas import has_control_characters

    bidi = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    refused = [
        code
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in {"Cc", "Zl", "Zp", "Cs"} or chr(code) in bidi
    ]
    assert [code for code in range(sys.maxunicode + 1) if has_control_characters(chr(code))] == (
        refused
    )
    assert len(refused) == 65 + 2 + 2048 + 9
    assert not has_control_characters("Jane O'Brien-Øster 李")
