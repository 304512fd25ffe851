"""Shared fixtures: real databases (SQLite and PostgreSQL), the app, its client, a live server.

Every database test runs on both backends (`database_url` is parametrised). PostgreSQL gets one
fresh database per test session, migrated once; each test starts from a clean copy of its data.
When PostgreSQL is unreachable the PostgreSQL half fails in CI (CI=true) and is skipped, with the
reason shown, on a developer machine without it.

The suite runs in two processes (pytest-xdist, `-n 2` in pyproject.toml; `-n 0` runs it in one),
each with a Redis database of its own. Every test on PostgreSQL runs in the same process
(`xdist_group`, below): the dealer feed and the consent ledger's sealing wait for every
transaction of the server, whatever its database, so two processes writing to one server would
hold back each other's leads and events. A test marked `alone` (load, timing, a large fill) runs
while the other process waits between two tests (`_turn`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import threading
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
from tests.servers import (
    SmtpSink,
    WebhookReceiver,
    smtp_server,
    webhook_server,
)
from tests.servers import free_port as free_port  # re-exported, as the next one
from tests.servers import wait_until as wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: Tables whose rows are reference data loaded once per test session.
REFERENCE_TABLES = {"zip_codes", "alembic_version", "consent_texts"}
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


#: Fixtures that open the test PostgreSQL server.
POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_url", "fresh_postgres_url"})


def _on_postgresql(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():
        return True
    return not POSTGRES_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _on_postgresql(item):
            item.add_marker(pytest.mark.xdist_group("postgresql"))


@pytest.fixture(autouse=True)
def _turn(request, tmp_path_factory) -> Iterator[None]:
    """Under pytest-xdist, a test marked `alone` waits until the other process is between two
    tests and holds it there until done. Every test holds the turn lock shared and an `alone`
    test exclusively; both pass a gate first, which an `alone` test keeps while it waits, so the
    other process cannot keep it waiting by starting test after test."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent
    alone = request.node.get_closest_marker("alone") is not None
    with open(shared / "turn.lock", "a") as turn, open(shared / "gate.lock", "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)


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


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port; `smtp.url` is its SMTP_URL."""
    yield from smtp_server()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP receiver for dealer webhooks on a free loopback port (`/hook`)."""
    yield from webhook_server()
