"""Helpers of the deliverability tests: a mailed welcome email and notifications about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from leadsvc.leads.models import Lead
from tests.factories import valid_signup
from tests.jobs.support import FAST, drain
from tests.servers import wait_until

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bounces"
BOUNCE_DOMAIN = "bounces.mini-stay.example"


@dataclass(frozen=True)
class Sent:
    """The welcome email as the SMTP server received it."""

    lead_id: int
    envelope_sender: str
    recipient: str
    message_id: str

    def notification(self, sample: str) -> bytes:
        """A sample notification filled in with this email's envelope, address and id."""
        text = (SAMPLES / sample).read_bytes()
        for name, value in (
            ("VERP", self.envelope_sender),
            ("RECIPIENT", self.recipient),
            ("MESSAGE_ID", self.message_id),
        ):
            text = text.replace(b"{{" + name.encode() + b"}}", value.encode())
        return text


def bounce_app(make_app, smtp, **changes):
    settings = {"smtp_url": smtp.url, "bounce_domain": BOUNCE_DOMAIN, **FAST, **changes}
    return make_app(**settings)


def send_welcome(app, smtp, session, email: str = "jane.doe@example.com") -> Sent:
    """Sign up `email` and deliver its welcome email through the SMTP server (a try that fails
    on a busy machine is tried again when due, as the relay would)."""
    before = len(smtp.received)
    assert app.test_client().post("/api/v1/signups", json=valid_signup(email=email)).status_code
    wait_until(lambda: drain(app) or len(smtp.received) > before, 15, "the welcome email")
    smtp.wait_for(before + 1)
    mail_from, rcpt_tos, _ = smtp.received[before]
    message = smtp.messages()[before]
    session.rollback()
    lead_id = session.scalars(sa.select(Lead.id).where(Lead.email == email)).one()
    return Sent(lead_id, mail_from, rcpt_tos[0], str(message["Message-ID"]))


def ingest(app, tmp_path, *datas: bytes) -> str:
    """`leadsvc bounces ingest` of each notification written to a file; its output."""
    paths = []
    for data in datas:
        path = tmp_path / f"notification-{len(list(tmp_path.glob('notification-*')))}.eml"
        path.write_bytes(data)
        paths.append(str(path))
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["bounces", "ingest", *paths])
    assert result.exit_code == 0, result.output
    return result.output
