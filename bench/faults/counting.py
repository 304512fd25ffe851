"""What the fault scripts count deliveries with: an SMTP sink and a webhook receiver."""

from __future__ import annotations

import collections
import dataclasses
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa
from e2e_latency import RECEIVER_PORT

SMTP_PORT = 8792
OPEN_ROWS = sa.text(
    "SELECT count(*) FROM outbox WHERE status IN ('pending', 'queued', 'sending', 'handed_off')"
)


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


@dataclasses.dataclass(frozen=True)
class Deliveries:
    """What arrived for a set of signups: a welcome email each, an ADF email and a webhook each."""

    people: int
    welcome: int
    welcome_missing: int
    welcome_duplicates: int
    dealer_mails: int
    hook_hits: int
    hook_deliveries: int

    @property
    def hook_duplicates(self) -> int:
        return self.hook_hits - self.hook_deliveries

    def lines(self, dealer_note: str = "") -> list[str]:
        return [
            f"  welcome emails at the sink {self.welcome} (missing {self.welcome_missing}, "
            f"duplicates {self.welcome_duplicates}); expected {self.people}",
            f"  dealer (ADF) emails at the sink {self.dealer_mails}{dealer_note}; "
            f"expected {self.people}",
            f"  webhook hits {self.hook_hits}, distinct deliveries {self.hook_deliveries}, "
            f"duplicates {self.hook_duplicates}; expected {self.people}",
        ]


def count_deliveries(sink: Sink, hooks: Hooks, people: list[str], people_prefix: str) -> Deliveries:
    """Count what the sink and the receiver got for the signups of `people` (addresses that all
    start with `people_prefix`; every other recipient at the sink is a dealer's lead inbox)."""
    with sink.lock:
        recipients = dict(sink.recipients)
    with hooks.lock:
        deliveries = dict(hooks.deliveries)
    return Deliveries(
        people=len(people),
        welcome=sum(recipients.get(a, 0) for a in people),
        welcome_missing=sum(1 for a in people if a not in recipients),
        welcome_duplicates=sum(recipients[a] - 1 for a in people if recipients.get(a, 0) > 1),
        dealer_mails=sum(c for a, c in recipients.items() if not a.startswith(people_prefix)),
        hook_hits=sum(deliveries.values()),
        hook_deliveries=len(deliveries),
    )
