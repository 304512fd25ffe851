"""The web worker class: a gthread worker whose threads are all busy leaves a new connection to a
sibling with a free thread, instead of taking it and making it wait."""

import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.test_cli import ROOT, free_port, stop, wait_until_serving


def get(url: str) -> tuple[str, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode(), time.monotonic() - started


def fetch_into(reply: dict, url: str) -> None:
    reply["reply"] = get(url)


def serve(port: int, worker_class: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class", worker_class, "--workers", "2",
         "--threads", "1", "--bind", f"127.0.0.1:{port}", "tests.ops.two_speed_app:app"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until_serving(process, f"http://127.0.0.1:{port}/")
    return process


@pytest.mark.slow
def test_a_busy_worker_leaves_new_connections_to_an_idle_one():
    """Two workers of one thread each. While one is busy with a slow request, a new connection
    is served at once by the other, every time (a worker taking it anyway, as plain gthread may,
    would make it wait out the slow request: 6 rounds leave that to chance 1 time in 64)."""
    port = free_port()
    process = serve(port, "leadsvc.ops.web_worker.BalancedThreadWorker")
    try:
        for _ in range(6):
            slow = {}
            thread = threading.Thread(
                target=fetch_into, args=(slow, f"http://127.0.0.1:{port}/slow")
            )
            thread.start()
            time.sleep(0.3)  # the slow request is being served
            pid, waited = get(f"http://127.0.0.1:{port}/pid")
            thread.join(10)
            slow_pid, _ = slow["reply"]
            assert waited < 0.5, f"waited {waited:.2f}s behind the slow request"
            assert pid != slow_pid
    finally:
        stop(process)


def test_the_gunicorn_configuration_uses_it():
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--print-config",
         "wsgi:app"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    settings = {}
    for line in printed.splitlines():
        name, equals, value = line.partition(" = ")
        settings[name.strip()] = value.strip()
    assert settings["worker_class"] == "leadsvc.ops.web_worker.BalancedThreadWorker"
