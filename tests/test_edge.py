"""The public edge: rate limits per client IP and per email, CORS for the site origins, and the
security headers on pages.

Limits are turned on per test with small numbers (`LIMITED`); the rest of the suite runs with
them off. "Nothing stored or sent" is checked as leads, consent events and outbox rows: the
outbox row is the only way an email or a dealer notification ever leaves.
"""

from __future__ import annotations

import logging
import re
import time
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.edge import email_key
from leadsvc.errors import FAILURE_MESSAGE
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from leadsvc.settings import DEFAULT_LIMIT_PER_EMAIL, DEFAULT_LIMIT_PER_IP, Settings
from leadsvc.signups.abuse import form_token
from tests.conftest import TEST_SECRET_KEY
from tests.factories import valid_signup

URL = "/api/v1/signups"
LIMITED = {
    "rate_limits_enabled": True,
    "signup_limit_per_ip": "3/minute",
    "signup_limit_per_email": "2/hour",
    "min_fill_seconds": 2,
}
SITE = "https://www.miniusa.com"
OTHER_SITE = "https://shop.miniusa.com"
CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
LIMITED_REPLY = {"code": 429, "status": "Too Many Requests", "message": FAILURE_MESSAGE}

only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def stored(session) -> tuple[int, int, int]:
    """Leads, consent events and outbox rows to send the database holds (a repeat signup's
    held-back rows are written as `skipped` and never leave)."""
    session.rollback()  # see what the requests committed
    count = sa.select(sa.func.count())
    return (
        session.scalar(count.select_from(Lead)),
        session.scalar(count.select_from(ConsentEvent)),
        session.scalar(count.select_from(OutboxMessage).where(OutboxMessage.status != "skipped")),
    )


def person(n: int, **overrides) -> dict:
    return valid_signup(email=f"person{n}@example.com", **overrides)


def api(client, body: dict, ip: str = "198.51.100.7", **kwargs):
    return client.post(URL, json=body, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def form(client, body: dict, ip: str = "198.51.100.7", **kwargs):
    """The no-JavaScript form post, with a render time a person's typing would leave behind."""
    data = {
        **body,
        "consent_text_version": "1",
        "form_token": form_token(TEST_SECRET_KEY, now=time.time() - 60),
    }
    return client.post("/signup", data=data, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def url_of(redis) -> str:
    """The URL of the `redis` fixture's database."""
    kwargs = redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def retry_after(response) -> int:
    value = int(response.headers["Retry-After"])
    assert 0 < value <= 3600, value
    return value


def assert_limited_json(response) -> None:
    assert response.status_code == 429
    assert response.get_json() == LIMITED_REPLY
    retry_after(response)


def assert_limited_page(response) -> None:
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert FAILURE_MESSAGE in response.text
    retry_after(response)


# --- per client IP ------------------------------------------------------------------------------


def test_a_burst_from_one_ip_is_limited_while_another_ip_passes(make_app, session):
    client = make_app(**LIMITED).test_client()

    for n in range(3):
        assert api(client, person(n)).status_code == 202
    assert stored(session) == (3, 3, 3)

    assert_limited_json(api(client, person(3)))
    assert_limited_json(api(client, person(4)))
    assert stored(session) == (3, 3, 3)  # the limited signups stored and sent nothing

    assert api(client, person(5), ip="203.0.113.9").status_code == 202
    assert stored(session) == (4, 4, 4)


def test_the_form_is_limited_with_its_failure_wording_and_the_page_itself_is_not(make_app, session):
    client = make_app(**LIMITED).test_client()

    for n in range(3):
        assert form(client, person(n)).status_code == 200
    assert stored(session) == (3, 3, 3)

    assert_limited_page(form(client, person(3)))
    assert stored(session) == (3, 3, 3)
    # Reading the form is never limited; only posting is.
    for _ in range(5):
        assert client.get("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200
    assert form(client, person(6), ip="203.0.113.9").status_code == 200
    assert stored(session) == (4, 4, 4)


@only_sqlite
def test_the_form_and_the_api_draw_on_one_budget_per_ip(make_app, session):
    client = make_app(**LIMITED).test_client()

    assert api(client, person(0)).status_code == 202
    assert form(client, person(1)).status_code == 200
    assert api(client, person(2)).status_code == 202

    assert_limited_page(form(client, person(3)))
    assert_limited_json(api(client, person(4)))
    assert stored(session) == (3, 3, 3)


@only_sqlite
@pytest.mark.parametrize(
    ("first", "same_network", "other_network"),
    [
        # One subscriber's addresses within a /64 count once; the next /64 is someone else.
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:3::1"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd:12:8000::42", "2001:db8:abcd:13::1"),
        # An IPv4 client seen through an IPv4-mapped IPv6 socket is that IPv4 address.
        ("198.51.100.7", "::ffff:198.51.100.7", "198.51.100.8"),
    ],
)
def test_ipv6_addresses_in_one_64_share_a_limit_and_another_64_does_not(
    make_app, session, first, same_network, other_network
):
    client = make_app(**LIMITED).test_client()

    assert api(client, person(0), ip=first).status_code == 202
    assert api(client, person(1), ip=same_network).status_code == 202
    assert api(client, person(2), ip=first).status_code == 202
    assert_limited_json(api(client, person(3), ip=same_network))
    assert_limited_json(api(client, person(4), ip=first))

    assert api(client, person(5), ip=other_network).status_code == 202
    assert stored(session) == (4, 4, 4)


@only_sqlite
def test_behind_the_configured_proxy_the_forwarded_client_address_is_limited(make_app, session):
    client = make_app(**LIMITED, proxy_count=1).test_client()

    def via_proxy(n, forwarded_for):
        # Every request arrives from the proxy's own address; it appends the client it saw.
        return client.post(
            URL,
            json=person(n),
            headers={"X-Forwarded-For": forwarded_for},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )

    for n in range(3):
        assert via_proxy(n, "198.51.100.7").status_code == 202
    assert_limited_json(via_proxy(3, "198.51.100.7"))
    # A client cannot escape by adding its own X-Forwarded-For: the proxy appends the real one.
    assert_limited_json(via_proxy(4, "203.0.113.50, 198.51.100.7"))
    # Another client behind the same proxy has its own budget.
    assert via_proxy(5, "203.0.113.50").status_code == 202
    assert stored(session) == (4, 4, 4)


@only_sqlite
def test_without_a_proxy_a_forged_x_forwarded_for_does_not_change_the_address(make_app, session):
    client = make_app(**LIMITED).test_client()  # proxy_count=0: the header is not trusted

    for n in range(3):
        response = api(client, person(n), headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert response.status_code == 202
    assert_limited_json(api(client, person(3), headers={"X-Forwarded-For": "203.0.113.99"}))
    assert stored(session) == (3, 3, 3)


# --- per email ----------------------------------------------------------------------------------


def test_the_per_email_limit_holds_across_ips(make_app, session):
    client = make_app(**LIMITED).test_client()
    body = valid_signup(email="jane.doe@example.com")

    assert api(client, body, ip="198.51.100.1").status_code == 202
    assert (
        form(client, {**body, "email": "Jane.Doe@Example.com"}, ip="198.51.100.2").status_code
        == 200
    )
    # One lead, signed up twice (one welcome email: a repeat signup sends no second one).
    assert stored(session) == (1, 2, 1)

    assert_limited_json(api(client, {**body, "email": " JANE.DOE@EXAMPLE.COM "}, ip="198.51.100.3"))
    assert_limited_page(form(client, body, ip="2001:db8:9::1"))
    assert stored(session) == (1, 2, 1)  # no third consent event, nothing sent

    # Another address from the same (fresh) IP is a different person.
    assert api(client, person(1), ip="198.51.100.3").status_code == 202
    assert stored(session) == (2, 3, 2)


@only_sqlite
@pytest.mark.parametrize(
    "spellings",
    [
        # One lead (email_key) each; so one per-email budget each.
        ("jose@xn--exmple-cua.com", "JOSE@EXÄMPLE.COM", "jose@exämple.com"),
        ("jose\u0301@example.com", "jos\u00e9@example.com", "JOS\u00c9@example.com"),
    ],
    ids=["idna-and-unicode-domain", "unicode-normal-forms"],
)
def test_the_per_email_limit_counts_every_spelling_of_one_address_once(
    make_app, session, spellings
):
    client = make_app(**LIMITED).test_client()

    assert api(client, valid_signup(email=spellings[0]), ip="198.51.100.1").status_code == 202
    assert api(client, valid_signup(email=spellings[1]), ip="198.51.100.2").status_code == 202
    assert stored(session)[0] == 1  # the service holds them as one person

    assert_limited_json(api(client, valid_signup(email=spellings[2]), ip="198.51.100.3"))
    assert stored(session) == (1, 2, 1)


@only_sqlite
def test_the_default_limits_are_on_and_sensible(make_app, session, tmp_path):
    settings = Settings(
        database_url="sqlite://", secret_key=TEST_SECRET_KEY, instance_path=tmp_path
    )
    assert settings.rate_limits_enabled is True
    assert (
        (settings.signup_limit_per_ip, settings.signup_limit_per_email)
        == (DEFAULT_LIMIT_PER_IP, DEFAULT_LIMIT_PER_EMAIL)
        == ("30/minute;300/hour", "5/hour;10/day")
    )
    assert settings.min_fill_seconds == 2.0
    client = make_app(
        rate_limits_enabled=True,
        signup_limit_per_ip=DEFAULT_LIMIT_PER_IP,
        signup_limit_per_email=DEFAULT_LIMIT_PER_EMAIL,
    ).test_client()

    # The default per-email limit: five signups of one address an hour, whatever the IP.
    for n in range(5):
        assert api(client, valid_signup(), ip=f"198.51.100.{n}").status_code == 202
    assert_limited_json(api(client, valid_signup(), ip="198.51.100.99"))
    # The default per-IP limit: 30 a minute (a carrier NAT stays usable, a flood does not).
    for n in range(30):
        assert api(client, person(n), ip="203.0.113.30").status_code == 202, n
    assert_limited_json(api(client, person(30), ip="203.0.113.30"))
    assert stored(session) == (31, 35, 31)


# --- Redis storage, and Redis down --------------------------------------------------------------


@only_sqlite
def test_limits_live_in_redis_shared_by_every_worker_and_hold_no_address_in_clear(
    make_app, session, redis
):
    workers = [make_app(**LIMITED, redis_url=url_of(redis)).test_client() for _ in range(2)]

    assert api(workers[0], person(0)).status_code == 202
    assert api(workers[1], person(1)).status_code == 202
    assert api(workers[0], person(2)).status_code == 202
    assert_limited_json(api(workers[1], person(3)))  # the second worker saw the first's counts

    keys = [key.decode() for key in redis.keys("*LIMITER*")]
    assert any("198.51.100.7" in key for key in keys), keys
    assert len([key for key in keys if "email:" in key]) == 3, keys
    assert not any("@" in key or "person" in key for key in keys), keys
    assert stored(session) == (3, 3, 3)


def test_with_redis_down_signups_still_work_and_limits_hold_in_memory(make_app, session, caplog):
    """Redis unreachable: each process counts in memory (Flask-Limiter's fallback), so signups
    are neither refused for it nor let through without limit."""
    client = make_app(**LIMITED, redis_url=CLOSED_REDIS).test_client()
    caplog.set_level(logging.INFO)

    started = time.monotonic()
    for n in range(3):  # the per-IP limit is 3 a minute
        assert api(client, person(n)).status_code == 202
    assert_limited_json(api(client, person(3)))
    assert time.monotonic() - started < 5
    # Stored, with their outbox rows waiting for the relay.
    assert stored(session) == (3, 3, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@only_sqlite
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"email": "' + b"x" * 20_000 + b'"}', "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b"email=" + b"x" * 20_000, "application/x-www-form-urlencoded"),
        (
            b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\n"
            + b"x" * 20_000
            + b"\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
    ],
    ids=["oversize-json", "nested-json", "oversize-form", "oversize-multipart"],
)
def test_the_email_key_reads_any_body_without_raising(app, body, content_type):
    """Flask-Limiter lets a request through unlimited when a key function raises, so the email
    key must read any body, however broken, and fall back to the client's address."""
    with app.test_request_context(
        URL,
        method="POST",
        data=body,
        content_type=content_type,
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    ):
        assert email_key() == "no-email:198.51.100.7"
    with app.test_request_context(URL, method="POST", json={"email": "Jane.Doe@Example.com"}):
        readable = email_key()
    with app.test_request_context(
        "/signup", method="POST", data={"email": " jane.doe@example.COM"}
    ):
        assert email_key() == readable
    assert readable.startswith("email:") and "jane" not in readable.lower()


# --- CORS ---------------------------------------------------------------------------------------


def preflight(client, path: str, origin: str, method: str = "POST"):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "Content-Type",
    }
    return client.options(path, headers=headers)


@only_sqlite
@pytest.mark.parametrize("origin", [SITE, OTHER_SITE])
def test_the_site_origins_may_call_the_signup_and_zip_apis(make_app, session, origin):
    client = make_app(site_origins=(SITE, OTHER_SITE)).test_client()

    for path, method in ((URL, "POST"), ("/api/v1/zips/10001", "GET")):
        answer = preflight(client, path, origin, method)
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        assert method in answer.headers["Access-Control-Allow-Methods"]
        assert "content-type" in answer.headers["Access-Control-Allow-Headers"].lower()
        assert "Access-Control-Allow-Credentials" not in answer.headers

    posted = client.post(URL, json=valid_signup(), headers={"Origin": origin})
    assert posted.status_code == 202
    assert posted.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in posted.headers.get("Vary", "")
    looked_up = client.get("/api/v1/zips/10001", headers={"Origin": origin})
    assert looked_up.status_code == 200
    assert looked_up.headers["Access-Control-Allow-Origin"] == origin


@only_sqlite
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://www.miniusa.com",
        "https://www.miniusa.com.evil.example",
        "null",
    ],
)
def test_other_origins_get_no_cors_grant(make_app, session, origin):
    client = make_app(site_origins=(SITE,)).test_client()

    for path, method in ((URL, "POST"), ("/api/v1/zips/10001", "GET")):
        assert "Access-Control-Allow-Origin" not in preflight(client, path, origin, method).headers
    posted = client.post(URL, json=valid_signup(), headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in posted.headers
    looked_up = client.get("/api/v1/zips/10001", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in looked_up.headers


@only_sqlite
@pytest.mark.parametrize(
    "path", ["/api/v1/dealer/leads", "/api/v1/admin/dealers", "/metrics", "/readyz"]
)
def test_the_dealer_and_admin_apis_are_not_offered_to_the_site_origins(make_app, session, path):
    client = make_app(site_origins=(SITE,)).test_client()

    assert "Access-Control-Allow-Origin" not in preflight(client, path, SITE, "GET").headers
    answer = client.get(path, headers={"Origin": SITE, "Authorization": "Bearer x"})
    assert "Access-Control-Allow-Origin" not in answer.headers


@only_sqlite
def test_without_site_origins_no_origin_is_granted(client):
    assert "Access-Control-Allow-Origin" not in preflight(client, URL, SITE).headers
    posted = client.post(URL, json=valid_signup(), headers={"Origin": SITE})
    assert posted.status_code == 202
    assert "Access-Control-Allow-Origin" not in posted.headers


# --- security headers ---------------------------------------------------------------------------


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class _InlineCode(HTMLParser):
    """Finds what a CSP without 'unsafe-inline' would block: inline scripts, handlers, styles."""

    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        for name, value in attributes.items():
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.inline.append(f"{tag} {name}=javascript:")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append("inline script")


@only_sqlite
def test_pages_carry_a_csp_without_inline_script_and_the_site_origins_as_frame_ancestors(
    make_app, session
):
    client = make_app(site_origins=(SITE, OTHER_SITE)).test_client()

    person = {**valid_signup(), "consent_text_version": "1"}
    pages = {
        "form": client.get("/"),
        "thanks": client.post(
            "/signup", data={**person, "form_token": form_token(TEST_SECRET_KEY)}
        ),
        "form with errors": client.post(
            "/signup", data={"form_token": form_token(TEST_SECRET_KEY)}
        ),
        "not found": client.get("/no-such-page"),
    }
    assert [r.status_code for r in pages.values()] == [200, 200, 422, 404]
    for name, response in pages.items():
        assert response.mimetype == "text/html", name
        directives = csp_directives(response)
        policy = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, name
        assert directives["script-src"] == ["'self'"], name
        assert directives["default-src"] == ["'self'"], name
        assert directives["object-src"] == ["'none'"], name
        assert directives["frame-ancestors"] == ["'self'", SITE, OTHER_SITE], name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", name
        # The page itself keeps to the policy: every script is a file of our own origin.
        found = _InlineCode()
        found.feed(response.text)
        assert found.inline == [], (name, found.inline)
        assert all(re.fullmatch(r"/static/[\w.-]+\.js", s.get("src") or "") for s in found.scripts)
    assert len(csp_directives(pages["form"])) >= 8


@only_sqlite
def test_without_site_origins_only_the_service_itself_may_frame_the_form(client):
    assert csp_directives(client.get("/"))["frame-ancestors"] == ["'self'"]


@only_sqlite
def test_json_replies_are_nosniff_and_keep_the_referrer_policy(client):
    for response in (
        client.post(URL, json=valid_signup()),
        client.get("/api/v1/zips/10001"),
        client.post(URL, json={}),
        client.get("/healthz"),
    ):
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_no_cookie_session_is_kept_and_writing_one_fails_loudly(app, client):
    """leadsvc sets no cookies: Flask's cookie session is never opened, and code that tried to
    write one would fail instead of quietly sending a cookie."""
    import flask

    page = client.get("/")
    signup = client.post("/api/v1/signups", json=valid_signup())
    assert page.status_code == 200 and signup.status_code == 202
    assert "Set-Cookie" not in page.headers and "Set-Cookie" not in signup.headers
    with app.test_request_context("/"), pytest.raises(RuntimeError):
        flask.session["x"] = 1


# --- Retry-After --------------------------------------------------------------------------------


@only_sqlite
def test_retry_after_is_sent_only_where_the_client_should_wait(make_app, session):
    """Only a reply that asks the client to wait says for how long: a 202 has no Retry-After, a
    429 its window's reset, a 503 its own 5 seconds."""
    client = make_app(**LIMITED).test_client()
    accepted = api(client, person(0))
    assert accepted.status_code == 202
    assert "Retry-After" not in accepted.headers
    assert api(client, person(0)).status_code == 202
    limited = api(client, person(0))
    assert_limited_json(limited)
    assert 50 < retry_after(limited) <= 3600  # the hour's window, not a token value

    closed = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    down = make_app(**LIMITED, database_url=closed)
    unavailable = api(down.test_client(), person(1))
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "5"


@only_sqlite
def test_answers_that_ask_for_a_fix_come_before_the_per_email_limit(make_app, session):
    """Requests the form refuses (no email, a body that is not JSON) spend nothing of the
    per-email budget: each keeps getting its own answer, and a visitor behind the same address
    who then fills the form in is taken."""
    client = make_app(**LIMITED).test_client()
    for n in range(3):  # more than the per-email limit (2), within the per-IP one (3)
        no_email = api(client, {**person(n), "email": ""}, ip="198.51.100.40")
        assert no_email.status_code == 422 and "email" in no_email.get_json()["errors"]
    text = client.post(
        "/api/v1/signups",
        data="x",
        content_type="text/plain",
        environ_base={"REMOTE_ADDR": "198.51.100.41"},
    )
    assert text.status_code == 415
    assert api(client, person(7), ip="198.51.100.42").status_code == 202
