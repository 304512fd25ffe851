"""The embedded default without Redis: the web process drains the outbox in a background thread."""

import json
import signal
import sqlite3
import subprocess
import time
import urllib.request

import pytest
import sqlalchemy as sa

from leadsvc.dealers import routing
from leadsvc.jobs.drainer import start_drainer, stop_drainer
from tests.conftest import free_port, wait_until
from tests.factories import valid_signup
from tests.jobs.support import (
    FAST,
    LEADSVC,
    add_dealer,
    attempts,
    kinds_and_statuses,
    outbox,
    validate_adf,
    worker_env,
)

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


@pytest.fixture
def drained(make_app, smtp):
    """An app without Redis, its drainer running (polling every 30 s only: a commit wakes it)."""
    app = make_app(smtp_url=smtp.url, **FAST)
    start_drainer(app, poll_seconds=30)
    yield app
    stop_drainer(app)


@sqlite_only
def test_a_commit_wakes_the_drainer_which_delivers_everything(drained, session, smtp):
    add_dealer(session)
    started = time.monotonic()
    assert drained.test_client().post("/api/v1/signups", json=valid_signup()).status_code == 202
    messages = smtp.wait_for(2)
    assert time.monotonic() - started < 10  # woken by the commit, not by the 30 s poll
    assert sorted(m["To"] for m in messages) == [
        "MINI NY1 <leads-ny1@example.com>",
        "jane.doe@example.com",
    ]
    wait_until(lambda: {s for _, s in kinds_and_statuses(session)} == {"sent"}, 5, "rows sent")
    for row in outbox(session):
        assert attempts(session, row.id) == [(1, "sent")]


@sqlite_only
def test_without_smtp_the_emails_are_eml_files(make_app, session, tmp_path):
    app = make_app(**FAST)
    start_drainer(app, poll_seconds=30)
    try:
        app.test_client().post("/api/v1/signups", json=valid_signup())
        mail_dir = app.config["LEADSVC_SETTINGS"].mail_dir
        [eml] = wait_until(lambda: list(mail_dir.glob("*.eml")), 10, "an .eml file")
    finally:
        stop_drainer(app)
    text = eml.read_text()
    assert eml.name == f"{outbox(session)[0].id}-welcome-email.eml"
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
    assert "To: jane.doe@example.com" in text
    assert list(mail_dir.glob(".*.tmp")) == []


@sqlite_only
def test_the_test_app_does_not_start_a_drainer_by_itself(client, session):
    """Under test (and with Redis) nothing is delivered behind the test's back."""
    client.post("/api/v1/signups", json=valid_signup())
    client.get("/")
    assert kinds_and_statuses(session) == [("welcome_email", "pending")]


@pytest.mark.slow
def ignore_sigint() -> None:
    """In the child before exec: SIGINT ignored, as in a background job of a shell script."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_leadsvc_serve_alone_delivers_everything(tmp_path, smtp, stop_signal):
    """`leadsvc serve` with no Redis: demo dealers, the form, the welcome and ADF emails sent;
    then Ctrl-C or SIGTERM stops it, even started with SIGINT ignored (a background job)."""

    port = free_port()
    env = worker_env("", tmp_path, SMTP_URL=smtp.url)
    for name in ("DATABASE_URL", "SECRET_KEY", "INSTANCE_PATH"):
        env.pop(name)
    env["PYTHONFAULTHANDLER"] = "1"  # a fatal signal prints every thread's stack
    process = subprocess.Popen(
        [LEADSVC, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_sigint,
    )
    try:
        sign_up_when_served(process, port, lambda: process.stdout.read(), 90)
        messages = smtp.wait_for(2, timeout=30)

        def rows():
            with sqlite3.connect(tmp_path / "instance" / "leadsvc.db") as connection:
                return connection.execute("SELECT kind, status FROM outbox ORDER BY id").fetchall()

        wait_until(lambda: {status for _, status in rows()} == {"sent"}, 10, "the rows sent")
    finally:
        process.send_signal(stop_signal)  # the drainer finishes what it is sending
        try:
            process.wait(timeout=30)  # the drainer gets at most 10 s to finish
        except subprocess.TimeoutExpired:  # show where it hangs (PYTHONFAULTHANDLER, below)
            process.send_signal(signal.SIGABRT)
            output = process.communicate(timeout=10)[0]
            pytest.fail(
                f"leadsvc serve still running 30 s after {stop_signal.name}:\n{output[-8000:]}"
            )
    assert process.returncode == 0, process.stdout.read()[-4000:]
    [welcome] = [m for m in messages if m["To"] == "jane.doe@example.com"]
    [notice] = [m for m in messages if m is not welcome]
    assert welcome["List-Unsubscribe"].strip().startswith("<https://stay.example.com/unsubscribe/")
    validate_adf(notice.get_content().replace("\r\n", "\n"))
    assert rows() == [("welcome_email", "sent"), ("dealer_email", "sent")]


@pytest.mark.slow
def test_leadsvc_serve_on_postgresql_without_redis_delivers(tmp_path, smtp, fresh_postgres_url):
    """`leadsvc serve` on PostgreSQL with no REDIS_URL: its drainer delivers the outbox and
    seals the consent events, and its log carries no database error."""

    port = free_port()
    env = worker_env(fresh_postgres_url, tmp_path, SMTP_URL=smtp.url)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [LEADSVC, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        sign_up_when_served(process, port, lambda: log_path.read_text()[-4000:], 120)
        messages = smtp.wait_for(1, timeout=30)  # no dealers: the welcome email alone
        engine = sa.create_engine(fresh_postgres_url)
        try:

            def sealed_and_sent():
                with engine.connect() as connection:
                    statuses = connection.execute(sa.text("SELECT status FROM outbox")).scalars()
                    seals = connection.execute(sa.text("SELECT count(*) FROM consent_seals"))
                    return set(statuses) == {"sent"} and seals.scalar() == 1

            wait_until(sealed_and_sent, 15, "the rows sent and the consent event sealed")
        finally:
            engine.dispose()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert [m["To"] for m in messages] == ["jane.doe@example.com"]
    text = log_path.read_text()
    assert "outbox drainer" not in text, text[-4000:]  # the drainer logs only its failures


def sign_up_when_served(process, port: int, output, timeout: float) -> None:
    """Wait until `leadsvc serve` answers on `port` (failing with `output()` if it exited),
    then post one signup to it."""

    def answers():
        assert process.poll() is None, output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return True
        except OSError:
            return False

    wait_until(answers, timeout, "leadsvc serve to answer", 0.2)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/signups",
        data=json.dumps(valid_signup()).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
