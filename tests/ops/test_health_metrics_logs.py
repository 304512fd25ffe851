"""Operations: `/healthz`, `/readyz`, `/metrics`, and the JSON logs.

Readiness is shown against the real PostgreSQL through a TCP relay this test can stop (the real
server is shared by the suite and keeps running); Redis "down" is a closed port.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from leadsvc.db import utcnow
from leadsvc.dealers.directory import import_dealers
from leadsvc.jobs.tasks import run_delivery
from leadsvc.ops.logs import JsonFormatter, RequestIdFilter, pseudonym
from leadsvc.outbound.mail import DeliveryError
from leadsvc.outbox.models import OutboxMessage
from leadsvc.signups.abuse import form_token
from tests.conftest import TEST_SECRET_KEY
from tests.factories import dealer_csv, dealer_line, valid_signup

URL = "/api/v1/signups"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/x"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.5"}
#: Who signs up in the log tests: none of these may ever reach a log line.
PERSON = {
    "first_name": "Zebulon",
    "last_name": "Quartermaine",
    "email": "zebulon.quartermaine@example.com",
    "zip": "10001",
}
SECRETS = ("zebulon", "quartermaine")


def url_of(redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def add_dealer(session) -> None:
    report = import_dealers(session, dealer_csv(dealer_line("NY1", "10019")))
    assert report.applied, report


# --- /healthz and /readyz ---------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_healthz_says_the_process_is_up_even_when_nothing_else_is(make_app):
    for app in (make_app(), make_app(database_url=CLOSED_POSTGRES, redis_url=CLOSED_REDIS)):
        response = app.test_client().get("/healthz")
        assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_is_ready_with_the_database_redis_and_a_routing_table(make_app, session, redis):
    add_dealer(session)
    response = make_app(redis_url=url_of(redis)).test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "routing": "ok"},
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_readyz_without_redis_configured_is_ready_embedded(make_app, session):
    add_dealer(session)
    response = make_app().test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["checks"] == {
        "database": "ok",
        "redis": "not configured",
        "routing": "ok",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_fresh_deployment_without_dealers_is_ready(make_app, session):
    """No dealers yet: signups are taken and wait in the unassigned pool."""
    response = make_app().test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["routing"] == "no dealers yet"


@pytest.mark.parametrize(
    ("changes", "with_dealer", "checks"),
    [
        (
            {"redis_url": CLOSED_REDIS},
            True,
            {"database": "ok", "redis": "unreachable", "routing": "ok"},
        ),
        (
            {"database_url": CLOSED_POSTGRES},
            True,
            {"database": "unreachable", "redis": "not configured", "routing": "not loaded"},
        ),
    ],
    ids=["redis-down", "postgresql-unreachable"],
)
def test_readyz_answers_503_naming_the_failing_part(
    make_app, session, changes, with_dealer, checks
):
    if with_dealer:
        add_dealer(session)
    started = time.monotonic()
    response = make_app(**changes).test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": checks}
    assert time.monotonic() - started < 5  # a probe never hangs on a dead dependency


class TcpRelay:
    """Forwards a local port to PostgreSQL; `stop()` is PostgreSQL going away, `start()` back."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below; close alone won't
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_readyz_turns_503_when_postgresql_stops_and_ready_when_it_is_back(
    make_app, session, database_url
):
    add_dealer(session)
    url = sa.make_url(database_url)
    relay = TcpRelay((url.host, url.port or 5432))
    relay.start()
    app = make_app(database_url=url.set(port=relay.port).render_as_string(hide_password=False))
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200

        relay.stop()
        for _ in range(2):  # the pooled connection breaks, then new ones are refused
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.get_json() == {
                "status": "unavailable",
                "checks": {
                    "database": "unreachable",
                    "redis": "not configured",
                    "routing": "not loaded",
                },
            }
        # A signup meanwhile gets the form's failure wording and a retry hint, never a trace.
        signup = client.post(URL, json=valid_signup())
        assert signup.status_code == 503
        assert signup.headers["Retry-After"] == "5"
        assert signup.get_json()["message"].startswith("Sorry about this.")

        relay.start()
        assert client.get("/readyz").status_code == 200
        assert client.post(URL, json=valid_signup()).status_code == 202
    finally:
        with contextlib.suppress(OSError):
            relay.stop()


# --- /metrics ---------------------------------------------------------------------------------


def scrape(client, **kwargs) -> dict[tuple, float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, *sorted(labels.items())), 0.0)


def delta(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_count_requests_latency_and_signups_by_outcome(make_app):
    app = make_app(
        rate_limits_enabled=True,
        signup_limit_per_ip="2/minute",
        signup_limit_per_email="5/hour",
        min_fill_seconds=2,
    )
    client = app.test_client()
    before = scrape(client)

    def post(body, ip):
        return client.post(URL, json=body, environ_base={"REMOTE_ADDR": ip}).status_code

    assert post(valid_signup(), "198.51.100.1") == 202  # accepted
    assert post(valid_signup(zip="00000"), "198.51.100.2") == 422  # invalid
    assert post(valid_signup(website="spam"), "198.51.100.3") == 202  # bot (honeypot)
    fast = {
        **valid_signup(),
        "consent_text_version": "1",
        "form_token": form_token(TEST_SECRET_KEY),
    }
    assert client.post("/signup", data=fast).status_code == 200  # bot (too fast), on the form
    assert post(valid_signup(email="b@example.com"), "198.51.100.1") == 202
    assert post(valid_signup(email="c@example.com"), "198.51.100.1") == 429  # rate limited
    assert client.get("/api/v1/zips/10001").status_code == 200
    after = scrape(client)

    signups = "leadsvc_signups_total"
    assert delta(before, after, signups, outcome="accepted") == 2
    assert delta(before, after, signups, outcome="invalid") == 1
    assert delta(before, after, signups, outcome="bot") == 2
    assert delta(before, after, signups, outcome="rate_limited") == 1
    requests = "leadsvc_http_requests_total"
    assert delta(before, after, requests, route=URL, method="POST", status="202") == 3
    assert delta(before, after, requests, route=URL, method="POST", status="422") == 1
    assert delta(before, after, requests, route=URL, method="POST", status="429") == 1
    assert delta(before, after, requests, route="/signup", method="POST", status="200") == 1
    assert (
        delta(
            before,
            after,
            requests,
            route="/api/v1/zips/<string:zip_code>",
            method="GET",
            status="200",
        )
        == 1
    )
    # Every request is timed, the refused ones too (the limiter answers before any view).
    latency = "leadsvc_http_request_seconds_count"
    assert delta(before, after, latency, route=URL) == 5
    assert delta(before, after, "leadsvc_http_request_seconds_bucket", route=URL, le="+Inf") == 5
    assert delta(before, after, "leadsvc_http_request_seconds_sum", route=URL) > 0


def test_metrics_show_outbox_depth_its_oldest_row_and_job_outcomes(make_app, session):
    app = make_app()
    client = app.test_client()
    add_dealer(session)
    for n in range(3):
        assert client.post(URL, json=valid_signup(email=f"p{n}@example.com")).status_code == 202
    session.rollback()
    rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    kinds = {kind: sum(1 for r in rows if r.kind == kind) for kind in {r.kind for r in rows}}
    assert kinds["welcome_email"] == 3

    samples = scrape(client)
    for kind, count in kinds.items():
        assert value(samples, "leadsvc_outbox_pending", kind=kind) == count
    assert 0 <= value(samples, "leadsvc_outbox_oldest_pending_seconds") < 60

    # The oldest open row is an hour old; one welcome email is sent, one fails to send.
    welcome = [r.id for r in rows if r.kind == "welcome_email"]
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == welcome[2])
        .values(created_at=utcnow() - timedelta(hours=1))
    )
    session.commit()
    assert run_delivery(app, welcome[0]) == "sent"
    broken = make_app(smtp_url="smtp://127.0.0.1:1", smtp_timeout=1.0)
    with pytest.raises(DeliveryError):
        run_delivery(broken, welcome[1])

    samples = scrape(client)
    assert value(samples, "leadsvc_outbox_pending", kind="welcome_email") == 2  # 1 retries later
    assert 3590 < value(samples, "leadsvc_outbox_oldest_pending_seconds") < 3700
    assert value(samples, "leadsvc_jobs_total", kind="welcome_email", outcome="sent") == 1
    assert value(samples, "leadsvc_jobs_total", kind="welcome_email", outcome="failed") == 1
    # Every process's /metrics reads the same outbox (jobs run in workers, not here).
    other = scrape(make_app().test_client())
    assert value(other, "leadsvc_jobs_total", kind="welcome_email", outcome="sent") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_are_for_the_loopback_or_the_token_holder_only(make_app):
    token = "metrics-token-0123456789abcdef"
    open_app = make_app().test_client()
    with_token = make_app(metrics_token=token).test_client()
    behind_proxy = make_app(proxy_count=1).test_client()

    def status(client, headers=None, environ=None):
        return client.get("/metrics", headers=headers or {}, environ_base=environ or {}).status_code

    assert status(open_app) == 200  # the test client is 127.0.0.1
    assert status(open_app, environ={"REMOTE_ADDR": "::1"}) == 200
    assert status(open_app, environ=OUTSIDE) == 403
    assert status(open_app, {"Authorization": f"Bearer {token}"}, OUTSIDE) == 403  # none is set
    assert status(with_token, environ=OUTSIDE) == 403
    assert status(with_token, {"Authorization": f"Bearer {token}"}, OUTSIDE) == 200
    assert status(with_token, {"Authorization": f"Bearer {token}x"}, OUTSIDE) == 403
    assert status(with_token, {"Authorization": f"Basic {token}"}, OUTSIDE) == 403
    assert status(with_token, {"Authorization": "Bearer "}, OUTSIDE) == 403
    # A proxy on the same host forwards the world from 127.0.0.1: not a loopback caller.
    assert status(open_app, {"X-Forwarded-For": "203.0.113.5"}) == 403
    assert status(open_app, {"Forwarded": "for=203.0.113.5"}) == 403
    # Behind the configured proxy, the client it names is the caller.
    assert status(behind_proxy, {"X-Forwarded-For": "203.0.113.5"}) == 403
    assert status(behind_proxy, {"X-Forwarded-For": "127.0.0.1, 203.0.113.5"}) == 403
    assert status(behind_proxy, {"X-Forwarded-For": "127.0.0.1"}) == 200
    refused = open_app.get("/metrics", environ_base=OUTSIDE)
    assert "leadsvc_" not in refused.text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_metrics_still_answer_when_the_database_is_down(make_app, caplog):
    samples = scrape(make_app(database_url=CLOSED_POSTGRES).test_client())

    assert any(key[0] == "leadsvc_http_requests_total" for key in samples)
    assert not any(key[0].startswith("leadsvc_outbox") for key in samples)
    assert "metrics: the outbox is unreadable (OperationalError)" in caplog.messages


# --- logs -------------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def assert_nothing_personal(text: str) -> None:
    lowered = text.lower()
    for secret in SECRETS:
        assert secret not in lowered, f"{secret!r} in the logs"
    assert "@example.com" not in lowered


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_logs_are_json_lines_with_request_ids_and_nothing_personal(
    make_app, session, capfd, monkeypatch
):
    capfd.readouterr()
    app = make_app(
        rate_limits_enabled=True,
        signup_limit_per_ip="50/minute",
        signup_limit_per_email="2/hour",
        min_fill_seconds=2,
    )
    client = app.test_client()
    add_dealer(session)
    replies = []

    def api(body, **kwargs):
        replies.append(client.post(URL, json=body, **kwargs))
        return replies[-1].status_code

    form = {
        **PERSON,
        "consent_text_version": "1",
        "form_token": form_token(TEST_SECRET_KEY, now=time.time() - 60),
    }
    assert api(PERSON) == 202
    replies.append(client.post("/signup", data=form))
    assert replies[-1].status_code == 200
    assert api(PERSON) == 429  # the per-email limit
    assert api({**PERSON, "email": "zebulon.quartermaine@example"}) == 422
    assert (
        api({**PERSON, "first_name": "Zebulon\r\nX-Header: 1", "email": "zebulon.q1@example.com"})
        == 422
    )
    assert (
        api(
            {
                **PERSON,
                "website": "zebulon.quartermaine@example.org",
                "email": "zebulon.q2@example.com",
            }
        )
        == 202
    )  # a bot
    assert api(PERSON, headers={"X-Request-ID": "client-chosen-id-42"}) == 429

    def failing_capture(session, signup, *args, **kwargs):
        # A library's line with the address in it (masked), then a failure whose message holds
        # the person's name and address (the failure's stack is logged, never its message).
        logging.getLogger("smtplib.example").warning(
            "relay refused <%s>",
            signup.email.normalized,
            extra={"recipients": [signup.email.normalized]},
        )
        raise RuntimeError(
            f"cannot store {signup.first_name} {signup.last_name} <{signup.email.normalized}>"
        )

    monkeypatch.setattr("leadsvc.signups.views.capture_signup", failing_capture)
    assert api({**PERSON, "email": "zebulon.q@example.com"}) == 500
    down = make_app(database_url=CLOSED_POSTGRES).test_client()
    replies.append(down.post(URL, json=PERSON))
    assert replies[-1].status_code == 503

    err = capfd.readouterr().err
    entries = json_lines(err)
    messages = [entry["message"] for entry in entries]
    # The lines one expects are there ...
    assert "signup stored" in messages
    assert "signup refused as a bot" in messages
    assert "unexpected failure: RuntimeError" in [m.split("\n")[0] for m in messages]
    assert "database unavailable: OperationalError" in messages
    assert any(m.startswith("ratelimit 2 per 1 hour (email:") for m in messages)
    assert f"POST {URL} 202" in messages and f"POST {URL} 429" in messages
    # ... each request's lines carry its request id, the one its reply names ...
    request_ids = {reply.headers["X-Request-ID"] for reply in replies}
    assert "client-chosen-id-42" in request_ids
    assert len(request_ids) == len(replies)
    in_requests = [e for e in entries if e["logger"] != "alembic.runtime.migration"]
    assert len(in_requests) > len(replies)
    for entry in in_requests:
        assert entry["request_id"] in request_ids, entry
    assert {e["request_id"] for e in in_requests} == request_ids
    # ... and no name, address or key is in clear anywhere.
    assert_nothing_personal(err)
    assert "[email]" in err  # the masked address of the failing relay line
    assert pseudonym(PERSON["email"]) in err  # the limiter's key, pseudonymised
    assert TEST_SECRET_KEY not in err


def test_the_servers_own_lines_carry_request_ids_and_no_link_tokens(make_app, capfd):
    """The development server (`leadsvc serve`: werkzeug's) logs no raw paths: the app's request
    line names the route pattern and the request id."""
    from werkzeug.serving import make_server

    capfd.readouterr()
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    token = "linktoken-0123456789abcdefghijklmnopqrstuvwxyz"
    try:
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(
                f"{base}/unsubscribe/{token}?email=zebulon%40example.com", timeout=5
            )
        request = urllib.request.Request(
            f"{base}{URL}",
            data=json.dumps(PERSON).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 202
    finally:
        server.shutdown()
        thread.join(timeout=5)

    err = capfd.readouterr().err
    entries = json_lines(err)
    assert all(entry["request_id"] for entry in entries), [
        e for e in entries if not e["request_id"]
    ]
    routes = [entry.get("route") for entry in entries if entry["logger"] == "leadsvc.requests"]
    assert routes == ["/unsubscribe/<token>", URL]
    assert token not in err and "zebulon" not in err.lower()


def test_the_formatter_masks_addresses_wherever_they_sit():
    class Recipient:
        def __str__(self):
            return "Zebulon <zebulon.quartermaine@example.com>"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("tests.ops.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "bounce from %s",
            "zebulon.quartermaine@example.com",
            extra={
                "to": ["zebulon.quartermaine@example.com"],
                "headers": {"Reply-To": "x@example.com"},
                "who": Recipient(),
                "pair": ("a@example.com", 1),
                "count": 3,
            },
        )
        try:
            raise ValueError("zebulon.quartermaine@example.com")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    first, second = json_lines(stream.getvalue())
    assert first["message"] == "bounce from [email]"
    assert first["to"] == ["[email]"] and first["headers"] == {"Reply-To": "[email]"}
    assert first["pair"] == ["[email]", 1] and first["count"] == 3
    assert first["who"] == "Zebulon <[email]>"
    assert (first["level"], first["request_id"]) == ("WARNING", None)
    assert (second["message"], second["error"]) == ("failed", "ValueError")
    assert "example.com" not in stream.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", first["time"])
