"""The `leadsvc` command and the production entry point, run as an operator would run them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY, wait_until
from tests.factories import valid_signup

ROOT = Path(__file__).resolve().parent.parent
LEADSVC = shutil.which("leadsvc") or str(Path(sys.executable).parent / "leadsvc")
SETTING_NAMES = ("DATABASE_URL", "SECRET_KEY", "INSTANCE_PATH", "REDIS_URL", "SMTP_URL")


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.slow
def test_serve_with_no_settings_runs_the_embedded_default(tmp_path):
    """`leadsvc serve` alone: migrates SQLite under instance/, loads ZIPs, serves the form."""
    port = free_port()
    process = subprocess.Popen(
        [LEADSVC, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}/")
        status, body = post_json(f"http://127.0.0.1:{port}/api/v1/signups", valid_signup())
        assert status == 202 and body["status"] == "received"
    finally:
        stop(process)
    database = tmp_path / "instance" / "leadsvc.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT email, zip5 FROM leads").fetchall() == [
            ("jane.doe@example.com", "10001")
        ]
        assert connection.execute("SELECT count(*) FROM zip_codes").fetchone()[0] > 41_000
    assert (tmp_path / "instance" / "secret_key").exists()


@pytest.mark.slow
def test_db_upgrade_on_postgresql(fresh_postgres_url, tmp_path):
    env = clean_env(
        DATABASE_URL=fresh_postgres_url, SECRET_KEY=TEST_SECRET_KEY, INSTANCE_PATH=str(tmp_path)
    )
    first = subprocess.run(
        [LEADSVC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "database at head" in first.stdout
    count = int(first.stdout.split(";")[1].split()[0])
    assert count > 41_000
    again = subprocess.run(
        [LEADSVC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and f"{count} ZIP codes" in again.stdout


def test_missing_secret_key_stops_the_start_with_a_clear_message(tmp_path):
    env = clean_env(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1/test", INSTANCE_PATH=str(tmp_path)
    )
    result = subprocess.run(
        [LEADSVC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SECRET_KEY is required" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_gunicorn_serves_wsgi_app_on_postgresql(postgres_url, tmp_path):
    """The Procfile's `web` process: gunicorn with config/gunicorn.conf.py and wsgi:app."""
    from tests.conftest import reset_postgres

    reset_postgres(postgres_url)
    port = free_port()
    env = clean_env(
        DATABASE_URL=postgres_url,
        SECRET_KEY=TEST_SECRET_KEY,
        INSTANCE_PATH=str(tmp_path),
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="2",
    )
    scans_before = routing_table_loads(postgres_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}/")
        # The master loaded the routing table before forking (its connection is closed, so its
        # statistics are in); the workers serve signups from that copy and never load it.
        wait_until(
            lambda: routing_table_loads(postgres_url) > scans_before,
            10,
            "the master to load the routing table",
        )
        for n in range(4):
            status, body = post_json(
                f"http://127.0.0.1:{port}/api/v1/signups",
                valid_signup(email=f"person{n}@example.com"),
            )
            assert status == 202, body
        # Two workers answered; /metrics sums both (prometheus multiprocess mode).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert 'leadsvc_signups_total{outcome="accepted"} 4.0' in metrics
    finally:
        output = stop_and_read(process)
    assert "routing table preloaded" in output
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM leads")).scalar_one() == 4
    engine.dispose()
    time.sleep(0.5)  # the workers' connections closed as they stopped; their statistics with them
    assert routing_table_loads(postgres_url) == scans_before + 1


def routing_table_loads(url: str) -> int:
    """How often the `zip_routes` table was read in full (loading the routing table does)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        scans = connection.execute(
            sa.text("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'zip_routes'")
        ).scalar_one()
    engine.dispose()
    return scans


def stop_and_read(process: subprocess.Popen) -> str:
    stop(process)
    return process.stdout.read()


def test_the_embedded_server_gives_up_on_a_body_shorter_than_its_length(app):
    """`leadsvc serve`'s server: a client that announces 100 bytes and sends 9 holds its
    connection for the read timeout, then gets an answer and a closed connection; other
    requests are served meanwhile."""
    from leadsvc.commands import embedded_server

    server = embedded_server(app, "127.0.0.1", 0, read_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as stalled:
            stalled.sendall(
                b"POST /api/v1/signups HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"email":'
            )
            started = time.monotonic()
            status, body = post_json(f"{base}/api/v1/signups", valid_signup())
            assert status == 202 and body["status"] == "received"
            assert time.monotonic() - started < 1.0  # not held up by the stalled client
            answer = b""
            while chunk := stalled.recv(65536):  # until the server closes the connection
                answer += chunk
            waited = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert 0.9 <= waited < 5
