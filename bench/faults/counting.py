"""What the fault scripts count deliveries with: an SMTP sink and a webhook receiver."""

from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa
from e2e_latency import RECEIVER_PORT

SMTP_PORT = 8792
OPEN_ROWS = sa.text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")


class Sink:
    def __init__(self):
        self.recipients: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            for address in envelope.rcpt_tos:
                self.recipients[address] += 1
        return "250 Message accepted"


class Hooks(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", RECEIVER_PORT), Hook)
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.deliveries[self.headers.get("X-Leadsvc-Delivery")] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass
