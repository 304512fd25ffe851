"""The form page without JavaScript: `GET /` renders the form, `POST /signup` (form-encoded)
answers with a thank-you page or the form again with each field's message under it.

Runs on both databases through the `client` and `session` fixtures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from leadsvc.signups.abuse import bot_reason, form_token
from tests.conftest import TEST_SECRET_KEY
from tests.factories import valid_signup

CONSENT_NOTICE = (
    "After we receive your information it may be used by MINI USA and your MINI Dealer "
    "to contact you."
)
RECEIVED = "We've received your information, so keep an eye out for communications from MINI USA."
REQUIRED = "This is a required field."
INVALID_EMAIL = "Please enter a valid email address."
INVALID_ZIP = "Please enter a valid Zip code."
FAILURE = "Sorry about this. Something went wrong, please come back and try again later."
FIELDS = {"first_name": "First Name", "last_name": "Last Name", "email": "Email", "zip": "Zip Code"}
PAGE_URL = "http://localhost/"


# --- a small HTML tree, enough to look at the rendered page as a browser would ---------------

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join("".join(parts).split())

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Node:
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"expected one element #{element_id}, found {len(found)}"
        return found[0]

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), parent=self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), parent=self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def field_error(page: Node, name: str) -> str:
    """The message shown under field `name` (inside the field's own wrapper)."""
    wrapper = page.by_id(name).parent
    assert "field" in wrapper.classes()
    errors = [n for n in wrapper.find_all("p") if "error" in n.classes()]
    assert len(errors) == 1
    return errors[0].text()


def hidden_inputs(page: Node, *, with_token: bool = False) -> dict[str, str]:
    """The form's hidden fields (the signed render time only when asked: it changes per render)."""
    hidden = {n.attrs["name"]: n.attrs["value"] for n in page.find_all("input", type="hidden")}
    if not with_token:
        hidden.pop("form_token")
    return hidden


def form_post(**overrides) -> dict:
    """What the browser posts for the page at PAGE_URL, with the person's typing in it."""
    data = {
        **valid_signup(),
        "consent_text_version": "1",
        "source": PAGE_URL,
        "form_token": form_token(TEST_SECRET_KEY, now=time.time() - 60),
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


# --- GET / --------------------------------------------------------------------------------


def test_form_page_shows_the_form_and_the_active_consent_notice(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = parse(response.text)
    assert page.find_all("title")[0].text() == "Stay In the Loop | MINI USA"
    assert page.find_all("h1")[0].text() == "Stay In the Loop"
    form = page.by_id("signup-form")
    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/signup")
    labels = {n.attrs["for"]: n.text() for n in form.find_all("label")}
    # The honeypot's label sits in a block hidden by CSS and from screen readers.
    assert labels.pop("website") == "Leave this field empty"
    assert labels == FIELDS
    for name in FIELDS:
        control = page.by_id(name)
        assert (control.tag, control.attrs["name"], control.attrs["value"]) == ("input", name, "")
        assert "aria-invalid" not in control.attrs
        assert field_error(page, name) == ""
    assert page.by_id("email").attrs["type"] == "email"
    assert page.by_id("consent-notice").text() == CONSENT_NOTICE
    hidden = hidden_inputs(page, with_token=True)
    assert (
        bot_reason(
            TEST_SECRET_KEY, "", hidden.pop("form_token"), min_seconds=0, token_required=True
        )
        is None
    )
    assert hidden == {"consent_text_version": "1", "source": PAGE_URL}
    assert page.by_id("form-failure").text() == ""
    assert page.find_all("button", type="submit")[0].text() == "Submit"
    # The JavaScript path's thank-you section is there, hidden until a signup is received.
    assert "hidden" in page.by_id("thanks").attrs
    assert "hidden" in page.by_id("thanks-suggestion").attrs


def test_form_page_carries_utm_parameters_as_hidden_fields_and_the_page_url_as_source(client):
    response = client.get(
        "/",
        query_string={
            "utm_source": "newsletter",
            "utm_campaign": '"><script>alert(1)</script>',
            "utm_term": "t" * 300,
            "utm_medium": "",
            "gclid": "not-a-utm-key",
        },
    )

    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&#34;&gt;&lt;script&gt;" in response.text
    assert hidden_inputs(parse(response.text)) == {
        "consent_text_version": "1",
        "source": PAGE_URL,  # the page's own URL, without its query string
        "utm_source": "newsletter",
        "utm_campaign": '"><script>alert(1)</script>',
        "utm_term": "t" * 200,
    }


def test_form_page_has_no_inline_scripts_or_styles(client):
    """A later Content-Security-Policy forbids inline script, inline style and handlers."""
    pages = {
        "form": client.get("/?utm_source=news"),
        "form with errors": client.post("/signup", data=form_post(first_name="", zip="x")),
        "thank-you": client.post("/signup", data=form_post(email="jane@gmial.com")),
        "error page": client.get("/no-such-page"),
    }
    for name, response in pages.items():
        page = parse(response.text)
        scripts = page.find_all("script")
        assert all(s.attrs.get("src") and not s.text() for s in scripts), name
        assert page.find_all("style") == [], name
        for node in page.iter():
            assert "style" not in node.attrs, (name, node.tag, node.attrs)
            handlers = [a for a in node.attrs if a.startswith("on")]
            assert handlers == [], (name, node.tag, handlers)
            assert not (node.attrs.get("href") or "").lower().startswith("javascript:"), name
        assert page.find_all("link", rel="stylesheet"), name
    assert [s.attrs["src"] for s in parse(pages["form"].text).find_all("script")] == [
        "/static/signup.js"
    ]


def test_static_files_are_served(client):
    script = client.get("/static/signup.js")
    style = client.get("/static/style.css")
    assert script.status_code == style.status_code == 200
    assert "/api/v1" not in script.text  # the API address comes from the page (data-api)
    assert ".error" in style.text


# --- POST /signup: received ---------------------------------------------------------------


def test_form_post_renders_the_thank_you_page_and_stores_the_lead_and_consent(client, session):
    response = client.post(
        "/signup",
        data=form_post(zip="10001-1234", utm_source="newsletter", utm_medium="email"),
        headers={"User-Agent": "FormTest/1.0"},
    )

    assert response.status_code == 200
    page = parse(response.text)
    assert page.find_all("title")[0].text() == "Thank You | MINI USA"
    assert page.by_id("thanks").find_all("h1")[0].text() == "Thank You."
    assert page.by_id("thanks-message").text() == RECEIVED
    assert page.find_all(id="thanks-suggestion") == []
    assert page.find_all("form") == []
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.last_name, lead.email, lead.zip5, lead.zip4) == (
        "Jane",
        "Doe",
        "jane.doe@example.com",
        "10001",
        "1234",
    )
    assert (lead.source, lead.utm, lead.consent_status, lead.consent_text_version) == (
        PAGE_URL,
        {"utm_source": "newsletter", "utm_medium": "email"},
        "given",
        1,
    )
    event = session.scalars(sa.select(ConsentEvent)).one()
    assert (event.lead_id, event.subject, event.event_type, event.text_version) == (
        lead.id,
        "jane.doe@example.com",
        "given",
        1,
    )
    assert (event.source_url, event.user_agent) == (PAGE_URL, "FormTest/1.0")
    assert event.request_id and response.headers["X-Request-ID"] == event.request_id


def test_form_post_trims_what_was_typed(client, session):
    response = client.post(
        "/signup", data=form_post(first_name="  Jane ", last_name=" Doe  ", zip=" 10001 ")
    )

    assert response.status_code == 200
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.last_name, lead.zip5) == ("Jane", "Doe", "10001")


def test_form_post_with_a_mistyped_provider_suggests_the_likely_address(client, session):
    response = client.post("/signup", data=form_post(email="jane@gmial.com"))

    assert response.status_code == 200
    page = parse(response.text)
    assert page.by_id("thanks-message").text() == RECEIVED
    hint = page.by_id("thanks-suggestion")
    assert hint.text().startswith("Did you mean jane@gmail.com?")
    assert hint.find_all("a")[0].attrs["href"] == "/"
    # The address is accepted as typed: the suggestion is only a hint.
    assert session.scalars(sa.select(Lead.email)).one() == "jane@gmial.com"


def test_a_repeat_signup_gets_the_same_page_and_updates_the_lead(client, session):
    first = client.post("/signup", data=form_post(first_name="Jane"))
    again = client.post("/signup", data=form_post(first_name="Janet", email="Jane.Doe@Example.com"))

    assert first.status_code == again.status_code == 200
    assert parse(first.text).by_id("thanks").text() == parse(again.text).by_id("thanks").text()
    lead = session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.signup_count) == ("Janet", 2)
    assert count(session, ConsentEvent) == 2


# --- POST /signup: errors -----------------------------------------------------------------


def test_the_empty_form_shows_the_three_messages_of_the_original_form(client, session):
    response = client.post(
        "/signup",
        data=form_post(first_name="", last_name="", email="", zip="", utm_source="newsletter"),
    )

    assert response.status_code == 422
    page = parse(response.text)
    shown = {name: field_error(page, name) for name in FIELDS}
    assert shown == {
        "first_name": REQUIRED,
        "last_name": REQUIRED,
        "email": INVALID_EMAIL,
        "zip": INVALID_ZIP,
    }
    assert len(set(shown.values())) == 3
    for name in FIELDS:
        control = page.by_id(name)
        assert control.attrs["aria-invalid"] == "true"
        assert control.attrs["aria-describedby"] == f"error-{name}"
        assert "invalid" in control.parent.classes()
    assert page.by_id("form-failure").text() == ""
    # The form is ready to be sent again, with the same hidden fields.
    assert hidden_inputs(page) == {
        "consent_text_version": "1",
        "source": PAGE_URL,
        "utm_source": "newsletter",
    }
    assert page.by_id("consent-notice").text() == CONSENT_NOTICE
    assert count(session, Lead) == count(session, ConsentEvent) == 0


def test_blank_spaces_count_as_empty(client, session):
    response = client.post(
        "/signup", data=form_post(first_name="   ", last_name="\t", email=" ", zip="  ")
    )

    assert response.status_code == 422
    page = parse(response.text)
    assert [field_error(page, name) for name in FIELDS] == [
        REQUIRED,
        REQUIRED,
        INVALID_EMAIL,
        INVALID_ZIP,
    ]
    assert count(session, Lead) == 0


@pytest.mark.parametrize(
    ("overrides", "name", "message"),
    [
        ({"email": "jane.doe@"}, "email", INVALID_EMAIL),
        ({"email": "jane doe@example.com"}, "email", INVALID_EMAIL),
        ({"zip": "1000"}, "zip", INVALID_ZIP),
        ({"zip": "00000"}, "zip", INVALID_ZIP),  # the right shape, but no such ZIP code
        ({"first_name": "Jane <b>"}, "first_name", "Please enter a valid first name."),
        ({"last_name": "x" * 51}, "last_name", "Please enter a valid last name."),
    ],
)
def test_one_wrong_field_shows_its_message_and_keeps_everything_typed(
    client, session, overrides, name, message
):
    data = form_post(**overrides)
    response = client.post("/signup", data=data)

    assert response.status_code == 422
    page = parse(response.text)
    assert field_error(page, name) == message
    assert page.by_id(name).attrs["aria-invalid"] == "true"
    for other in set(FIELDS) - {name}:
        assert field_error(page, other) == ""
        assert "aria-invalid" not in page.by_id(other).attrs
    assert {n: page.by_id(n).attrs["value"] for n in FIELDS} == {n: data[n] for n in FIELDS}
    assert count(session, Lead) == count(session, ConsentEvent) == 0


def test_typed_values_are_kept_html_escaped(client, session):
    typed = {
        "first_name": '"><script>alert("first")</script>',
        "last_name": "O'Brien & <Sons>",
        "email": '"onmouseover="alert(1)',
        "zip": "<img src=x onerror=alert(1)>",
    }
    response = client.post("/signup", data=form_post(**typed))

    assert response.status_code == 422
    for raw in ('<script>alert("first")</script>', "<Sons>", '"onmouseover=', "<img src=x"):
        assert raw not in response.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(&#34;first&#34;)&lt;/script&gt;"' in response.text
    assert 'value="O&#39;Brien &amp; &lt;Sons&gt;"' in response.text
    page = parse(response.text)
    # Read back as a browser would: exactly what was typed, in the value attribute only.
    assert {name: page.by_id(name).attrs["value"] for name in FIELDS} == typed
    assert [s.attrs.get("src") for s in page.find_all("script")] == ["/static/signup.js"]
    assert all("onmouseover" not in n.attrs and "onerror" not in n.attrs for n in page.iter())
    assert count(session, Lead) == 0


def test_a_consent_text_version_the_server_does_not_know_asks_for_a_reload(client, session):
    response = client.post("/signup", data=form_post(consent_text_version="99"))

    assert response.status_code == 422
    page = parse(response.text)
    assert page.by_id("form-failure").text() == "Please reload the page and try again."
    assert [field_error(page, name) for name in FIELDS] == ["", "", "", ""]
    # The form comes back with the active version, so sending it again works.
    assert hidden_inputs(page)["consent_text_version"] == "1"
    assert count(session, Lead) == count(session, ConsentEvent) == 0


def test_a_tampered_hidden_field_shows_the_failure_message(client, session):
    response = client.post("/signup", data=form_post(source="javascript:alert(1)"))

    assert response.status_code == 422
    page = parse(response.text)
    assert page.by_id("form-failure").text() == FAILURE
    assert "javascript:alert(1)" not in [n.attrs.get("href") for n in page.iter()]
    assert count(session, Lead) == 0


def test_get_signup_is_not_a_page(client):
    response = client.get("/signup")

    assert response.status_code == 405
    page = parse(response.text)
    assert page.find_all("a")[0].attrs["href"] == "/"
    assert page.find_all("form") == []


def test_a_control_character_in_a_utm_link_does_not_break_the_form(client, session):
    page = parse(client.get("/?utm_content=spring%0Asale&utm_source=mail").text)
    hidden = hidden_inputs(page)
    assert hidden["utm_content"] == "springsale" and hidden["utm_source"] == "mail"
    response = client.post(
        "/signup", data=form_post(**{k: v for k, v in hidden.items() if k.startswith("utm_")})
    )
    assert response.status_code == 200 and "Thank You." in response.text
    stored = session.scalar(sa.select(Lead.utm))
    assert stored == {"utm_content": "springsale", "utm_source": "mail"}
