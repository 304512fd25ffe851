"""`leadsvc serve`, `worker` and `relay` started against a database or Redis that is down: one
line naming the setting and the driver's reason, never a traceback; `worker` and `relay` wait
for it with a growing pause and carry on once it is back."""

from __future__ import annotations

import subprocess
import threading

import pytest

from tests.conftest import TEST_SECRET_KEY, wait_until
from tests.test_cli import LEADSVC, clean_env, free_port, stop

CLOSED_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


class Running:
    """A `leadsvc` subprocess whose standard error is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd):
        self.process = subprocess.Popen(
            [LEADSVC, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> list[str]:
        def found() -> bool:
            return sum(text in line for line in self.lines) >= count

        wait_until(found, timeout, f"{count} lines with {text!r}; got {self.lines}")
        return [line for line in self.lines if text in line]

    def stop(self) -> str:
        stop(self.process)
        self._reader.join(timeout=5)
        return "".join(self.lines)


def settings_env(tmp_path, **settings: str) -> dict[str, str]:
    return clean_env(SECRET_KEY=TEST_SECRET_KEY, INSTANCE_PATH=str(tmp_path), **settings)


def test_serve_with_the_database_down_says_so_in_one_line_and_stops(tmp_path):
    env = settings_env(tmp_path, DATABASE_URL=CLOSED_DATABASE)
    result = subprocess.run(
        [LEADSVC, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("leadsvc serve: DATABASE_URL: the database is unreachable (")
    assert "Connection refused" in line


def test_the_relay_waits_for_the_database_naming_it_with_a_growing_pause(tmp_path, redis_url):
    relay = Running(
        ["relay"],
        settings_env(tmp_path, DATABASE_URL=CLOSED_DATABASE, REDIS_URL=redis_url),
        tmp_path,
    )
    try:
        lines = relay.wait_for("DATABASE_URL: the database is unreachable", count=3)
        assert relay.process.poll() is None  # still trying
    finally:
        output = relay.stop()
    assert "Traceback" not in output
    assert "Connection refused" in lines[0]
    assert ["trying again in 0.5 s" in lines[0], "trying again in 1.0 s" in lines[1]] == [True] * 2
    assert "trying again in 2.0 s" in lines[2]


@pytest.mark.slow
def test_the_worker_waits_for_redis_and_starts_once_it_is_back(tmp_path):
    port = free_port()
    database = f"sqlite:///{tmp_path / 'leadsvc.db'}"
    worker = Running(
        ["worker"],
        settings_env(tmp_path, DATABASE_URL=database, REDIS_URL=f"redis://127.0.0.1:{port}/0"),
        tmp_path,
    )
    redis_server = None
    try:
        lines = worker.wait_for("REDIS_URL: Redis is unreachable", count=2)
        assert "trying again in 0.5 s" in lines[0] and "trying again in 1.0 s" in lines[1]
        assert "Connection refused" in lines[0]
        assert worker.process.poll() is None
        redis_server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        worker.wait_for("Listening on webhooks, outbound", timeout=60)
    finally:
        output = worker.stop()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)
    assert "Traceback" not in output


def test_one_relay_pass_with_the_database_down_says_so_in_one_line(tmp_path, redis_url):
    env = settings_env(tmp_path, DATABASE_URL=CLOSED_DATABASE, REDIS_URL=redis_url)
    result = subprocess.run(
        [LEADSVC, "relay", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: relay: DATABASE_URL: the database is unreachable (")
