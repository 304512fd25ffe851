"""Real servers the tests talk to, on free loopback ports: an SMTP server (aiosmtpd) that keeps
what it accepts, and an HTTP receiver for dealer webhooks; and the waits the tests share."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import sys
import threading
import time
from collections.abc import Iterator


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
    SMTP (`timeout=0.3`: it closes a session idle that long). Its name is fixed, so no
    connection waits on a DNS lookup of this machine's name."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        server_hostname="sink.test",
        enable_SMTPUTF8=True,
        **parameters,
    )
    controller.start()
    sink.url = f"smtp://127.0.0.1:{port}"
    yield sink
    for stall in list(sink.stalls.values()):
        stall.release()
    controller.stop()


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


def webhook_server() -> Iterator[WebhookReceiver]:
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
