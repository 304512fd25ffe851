"""Shared fixtures: real databases (SQLite and PostgreSQL), the app, its client, a live server.

Every database test runs on both backends (`database_url` is parametrised). PostgreSQL gets one
fresh database per test session, migrated once; each test starts from a clean copy of its data.
When PostgreSQL is unreachable the PostgreSQL half fails in CI (CI=true) and is skipped, with the
reason shown, on a developer machine without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.policy
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

import leadsvc.models  # noqa: F401  (every table in Base.metadata)
from leadsvc.app import create_app
from leadsvc.db import Base, create_db_engine, upgrade_schema
from leadsvc.extensions import db
from leadsvc.geo.directory import ZipDirectory, store_zip_directory
from leadsvc.geo.source import read_zip_rows
from leadsvc.settings import Settings
from tests.factories import TEST_WEBHOOK_NETWORKS

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: Tables whose rows are reference data loaded once per test session.
REFERENCE_TABLES = {"zip_codes", "alembic_version", "consent_texts"}
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


def service_unreachable(what: str, error: BaseException):
    """Fail in CI; skip (with the reason) on a developer machine that lacks the service."""
    message = f"{what} is unreachable: {type(error).__name__}: {error}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def zip_rows(tmp_path_factory):
    """Every US ZIP, read once through pgeocode from the offline source."""
    return read_zip_rows(tmp_path_factory.mktemp("pgeocode"))


@pytest.fixture(scope="session")
def shared_zip_directory(zip_rows) -> ZipDirectory:
    """The in-memory directory the apps under test share (each would load the same rows)."""
    return ZipDirectory(sorted((r.zip5, r.city, r.state) for r in zip_rows))


def _migrate_and_load(url: str, zip_rows) -> None:
    engine = create_db_engine(url)
    try:
        upgrade_schema(engine)
        with Session(engine) as session:
            store_zip_directory(session, zip_rows)
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory, zip_rows) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "leadsvc.db"
    _migrate_and_load(f"sqlite:///{path}", zip_rows)
    return path


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the real PostgreSQL, checked once."""
    engine = create_db_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        service_unreachable("PostgreSQL at " + POSTGRES_ADMIN_URL, error)
    finally:
        engine.dispose()
    return POSTGRES_ADMIN_URL


def create_postgres_database(admin_url: str) -> str:
    """A new, empty database on the test server; returns its URL."""
    name = f"leadsvc_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_postgres_url(postgres_server) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (for migration tests)."""
    url = create_postgres_database(postgres_server)
    yield url
    drop_postgres_database(postgres_server, url)


@pytest.fixture(scope="session")
def postgres_url(postgres_server, zip_rows) -> Iterator[str]:
    url = create_postgres_database(postgres_server)
    _migrate_and_load(url, zip_rows)
    yield url
    drop_postgres_database(postgres_server, url)


def reset_postgres(url: str) -> None:
    """Empty every table but the reference data; restore consent text version 1 as active."""
    tables = [t.name for t in Base.metadata.sorted_tables if t.name not in REFERENCE_TABLES]
    engine = create_db_engine(url)
    with engine.begin() as connection:
        # Consent events refuse TRUNCATE by trigger; a test reset is the one place that may.
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        connection.execute(sa.text("DELETE FROM consent_texts WHERE version > 1"))
        connection.execute(sa.text("UPDATE consent_texts SET active = (version = 1)"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A migrated database with the ZIP directory loaded and no leads, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "leadsvc.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    # Rate limits and the minimum fill time are off here (tests post fast and often from one
    # address); tests/signups/test_abuse.py turns them on.
    return Settings(
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        instance_path=tmp_path / "instance",
        rate_limits_enabled=False,
        min_fill_seconds=0,
        webhook_allowed_networks=TEST_WEBHOOK_NETWORKS,
    )


@pytest.fixture
def app(settings, shared_zip_directory):
    app = create_app(settings)
    app.config["TESTING"] = True
    app.extensions["leadsvc.zip_directory"] = shared_zip_directory
    yield app
    db.engine(app).dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(app):
    """A session on the app's database, inside an app context (as a CLI command or job runs)."""
    with app.app_context(), db.sessionmaker(app)() as session:
        yield session


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served over real HTTP on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def make_app(settings, shared_zip_directory):
    """Build apps on the test database with settings changed (`make_app(redis_url=...)`)."""
    built = []

    def build(**changes):
        app = create_app(dataclasses.replace(settings, **changes))
        app.config["TESTING"] = True
        app.extensions["leadsvc.zip_directory"] = shared_zip_directory
        built.append(app)
        return app

    yield build
    for app in built:
        db.engine(app).dispose()


# --- Outbound: real Redis, a real SMTP server, a real HTTP receiver for webhooks -----------------

#: The test Redis: a server URL (each test session claims a database of its own, 15 down to 1,
#: so sessions running side by side on one machine do not take each other's jobs), or a URL
#: with a database number to use that one.
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
_REDIS_CLAIM = "leadsvc-tests:claim"
_SESSION_TOKEN = uuid.uuid4().hex


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of this test session's Redis database."""
    import redis as redis_library

    has_database = TEST_REDIS.rstrip("/").rsplit("/", 1)[-1].isdigit()
    candidates = [TEST_REDIS] if has_database else [f"{TEST_REDIS}/{n}" for n in range(15, 0, -1)]
    for url in candidates:
        client = redis_library.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        try:
            if has_database or client.set(_REDIS_CLAIM, _SESSION_TOKEN, nx=True, ex=3600):
                break
        except redis_library.exceptions.ConnectionError as error:
            service_unreachable("Redis at " + TEST_REDIS, error)
        finally:
            client.close()
    else:
        pytest.fail("every Redis database 1-15 is claimed by another test session")
    yield url
    client = redis_library.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    with contextlib.suppress(redis_library.exceptions.ConnectionError):
        if client.get(_REDIS_CLAIM) == _SESSION_TOKEN.encode():
            client.flushdb()
    client.close()


@pytest.fixture
def redis(redis_url):
    """The real Redis, this session's database, empty; fails in CI and skips elsewhere if down."""
    import redis as redis_library

    client = redis_library.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
        client.set(_REDIS_CLAIM, _SESSION_TOKEN, ex=3600)  # the database stays this session's
    except redis_library.exceptions.ConnectionError as error:
        service_unreachable("Redis at " + redis_url, error)
    yield client
    with contextlib.suppress(redis_library.exceptions.ConnectionError):
        client.flushdb()
        client.set(_REDIS_CLAIM, _SESSION_TOKEN, ex=3600)
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Stall:
    """Holds the SMTP server at one step of one conversation until released."""

    def __init__(self):
        self.reached = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()


class SmtpSink:
    """aiosmtpd's handler: keeps every accepted message; can stall at RCPT or after DATA."""

    def __init__(self):
        self.received: list[tuple[str, list[str], bytes]] = []
        #: The client's address and port of each accepted message: one for each SMTP session.
        self.peers: list[tuple[str, int]] = []
        self.reject_codes: list[str] = []  # replies to the next DATA commands, e.g. "451 later"
        #: Recipients refused at RCPT TO, with the reply, e.g. {"a@example.com": "550 no"}.
        self.refused_recipients: dict[str, str] = {}
        self.stalls: dict[str, Stall] = {}
        self._lock = threading.Lock()
        self.url = ""

    def stall(self, step: str) -> Stall:
        """Stall the next conversation at `step`: "rcpt" (before accepting) or "data" (after)."""
        self.stalls[step] = Stall()
        return self.stalls[step]

    async def _hold(self, step: str) -> None:
        stall = self.stalls.pop(step, None)
        if stall is not None:
            stall.reached.set()
            while not stall.released.is_set():
                await asyncio.sleep(0.02)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await self._hold("rcpt")
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            if self.reject_codes:
                return self.reject_codes.pop(0)
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.peers.append(session.peer)
        await self._hold("data")
        return "250 Message accepted"

    def messages(self) -> list:
        """The accepted messages, parsed (`email.message.EmailMessage`), in arrival order."""
        with self._lock:
            received = list(self.received)
        return [
            email.message_from_bytes(data, policy=email.policy.default) for _, _, data in received
        ]

    def wait_for(self, count: int, timeout: float = 15) -> list:
        wait_until(lambda: len(self.received) >= count, timeout, f"{count} emails")
        return self.messages()


def smtp_server(**parameters) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port; `parameters` go to aiosmtpd's
    SMTP (`timeout=0.3`: it closes a session idle that long)."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    port = free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True, **parameters
    )
    controller.start()
    sink.url = f"smtp://127.0.0.1:{port}"
    yield sink
    for stall in list(sink.stalls.values()):
        stall.release()
    controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port; `smtp.url` is its SMTP_URL."""
    yield from smtp_server()


class WebhookReceiver:
    """A real HTTP server that records every request; answers the `statuses` queue, then 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self.url = ""

    def wait_for(self, count: int, timeout: float = 15) -> list[dict]:
        wait_until(lambda: len(self.requests) >= count, timeout, f"{count} webhook requests")
        with self._lock:
            return list(self.requests)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP receiver for dealer webhooks on a free loopback port (`/hook`)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps connections open, as dealers' servers do

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver._lock:
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "peer": self.client_address,  # one for each connection
                    }
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            time.sleep(receiver.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            """A client that died with its connection open (a killed worker) is no error."""
            if not isinstance(sys.exception(), ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
