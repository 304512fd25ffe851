"""A consent export whose client goes away mid-download, served by gunicorn as in production:
its COPYs end and its database connections leave their transaction within seconds."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from leadsvc.auth.keys import create_key
from leadsvc.consent.export import PG_STREAMS
from leadsvc.consent.models import ExportAudit
from tests.conftest import free_port, wait_until
from tests.consent.test_export import T0
from tests.jobs.support import ROOT, worker_env

DAY = timedelta(days=1)
#: Seconds the export's connections may take to leave their COPY once the client has gone.
RELEASE_SECONDS = 5


def export_backends(session) -> dict[int, str]:
    """pid -> state of this database's backends whose latest statement is an export's COPY (read
    in a transaction of its own: PostgreSQL keeps one view of pg_stat_activity per transaction)."""
    session.rollback()
    rows = session.execute(
        sa.text(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'COPY (%'"
        )
    ).all()
    session.rollback()
    return dict(rows)


def states(session, pids) -> dict[int, str]:
    """pid -> state of those backends still connected."""
    session.rollback()
    rows = session.execute(
        sa.text("SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(:pids)"),
        {"pids": list(pids)},
    ).all()
    session.rollback()
    return dict(rows)


def fill(session) -> None:
    """About 60 MB of JSON lines: far more than the sockets between PostgreSQL, gunicorn and the
    client hold, so the export is still running when the client goes."""
    session.execute(
        sa.text(
            "INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at,"
            " user_agent, source_url) "
            "SELECT NULL, 'bulk' || n || '@example.com', 'given', 1, :at, repeat('a', 500),"
            " 'https://example.com/' || repeat('b', 1500) FROM generate_series(1, 30000) AS n"
        ),
        {"at": T0 + timedelta(seconds=30)},
    )
    session.commit()


@contextlib.contextmanager
def partial_download(port: int, key: str, size: int) -> Iterator[bytes]:
    """Ask for the whole export as JSON lines and read `size` bytes of the reply; on leaving, close
    the socket without reading the rest (as a client that gives up does)."""
    request = (
        f"GET /api/v1/consent/events?format=jsonl&from={T0.date()}&to={T0.date() + DAY} "
        f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(request)
        while len(received) < size:
            data = client.recv(65536)
            assert data, received[:2000]
            received += data
        yield received


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_download_cut_off_mid_export_gives_its_connections_back(session, database_url, tmp_path):
    fill(session)
    key = create_key(session, "compliance")[1]
    session.commit()
    port = free_port()
    env = worker_env(database_url, tmp_path, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1")
    command = [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "wsgi:app"]
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ready(server, port), 90, "gunicorn to be ready", 0.2)
        with partial_download(port, key, 2_000_000) as received:
            assert received.startswith(b"HTTP/1.1 200 "), received[:500]
            assert b'{"event_id" : ' in received
            # Both COPYs are running (waiting to send) as the client goes.
            copies = export_backends(session)
            assert len(copies) == PG_STREAMS and "idle" not in copies.values(), copies

        def released() -> bool:
            return all(state == "idle" for state in states(session, copies).values())

        wait_until(released, RELEASE_SECONDS, "the export's connections to leave their COPY")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    audit = session.scalars(sa.select(ExportAudit).order_by(ExportAudit.id.desc())).first()
    assert (audit.format, audit.finished_at) == ("jsonl", None)  # it never ran to its end


def ready(server: subprocess.Popen, port: int) -> bool:
    assert server.poll() is None, "gunicorn exited"
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
