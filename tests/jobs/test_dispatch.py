"""The request path's wait for Redis is bounded: a hung Redis costs a signup half a second once."""

import socket
import threading
import time

import pytest

from tests.factories import valid_signup
from tests.jobs.support import FAST, kinds_and_statuses


@pytest.fixture
def hung_redis():
    """A server that accepts connections and never answers (a Redis stuck or black-holed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


def test_a_hung_redis_delays_a_signup_by_a_bounded_time_and_the_rows_wait(
    make_app, session, hung_redis, caplog
):
    app = make_app(redis_url=hung_redis, **FAST)
    client = app.test_client()
    started = time.monotonic()
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    first = time.monotonic() - started
    assert 0.4 < first < 2  # it waited for Redis, but only the 0.5 s socket timeout
    started = time.monotonic()
    second = client.post("/api/v1/signups", json=valid_signup(email="b@example.com"))
    assert second.status_code == 202
    assert time.monotonic() - started < 0.4  # Redis is skipped for a while after it failed
    assert kinds_and_statuses(session) == [("welcome_email", "pending")] * 2  # for the relay
    warnings = [r.getMessage() for r in caplog.records if r.name == "leadsvc.jobs.dispatch"]
    assert warnings[0] == "redis unavailable (TimeoutError): 1 outbox rows left for the relay"
    assert "@" not in " ".join(warnings)
