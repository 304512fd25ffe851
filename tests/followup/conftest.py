"""Dealers, leads and a hand-moved clock for the follow-up tests.

NYA (ZIP 10001) gets the signups from 10001; NYB (10019, about 4 km away) is the next nearest;
CHI (60601) is far beyond REASSIGN_MAX_KM. The clock starts on Monday 2026-03-02 at 09:00 in
New York, and each lead is dated to that moment: with the default 24-hour target and opening
hours (mon-fri 09:00-18:00, sat 09:00-17:00), the reminder falls on Tuesday at 12:00 and the
target on Wednesday at 15:00, New York time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from leadsvc.auth.keys import create_key
from leadsvc.dealers import routing
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.followup.clock import ManualClock, use_clock
from leadsvc.followup.service import follow_up_for_app
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.factories import TEST_WEBHOOK_NETWORKS, dealer_csv, dealer_line, valid_signup

NEW_YORK = ZoneInfo("America/New_York")
START = datetime(2026, 3, 2, 9, 0, tzinfo=NEW_YORK).astimezone(UTC)
REMIND = datetime(2026, 3, 3, 12, 0, tzinfo=NEW_YORK).astimezone(UTC)
DUE = datetime(2026, 3, 4, 15, 0, tzinfo=NEW_YORK).astimezone(UTC)
HOOK_SECRET = "dealer-webhook-secret-0123456789"


@pytest.fixture
def clock(app) -> ManualClock:
    clock = ManualClock(START)
    use_clock(app, clock)
    return clock


def load_dealers(session, *, webhook_url: str = "") -> dict[str, int]:
    secret = HOOK_SECRET if webhook_url else ""
    report = import_dealers(
        session,
        dealer_csv(
            dealer_line("NYA", "10001", webhook_url=webhook_url, webhook_secret=secret),
            dealer_line("NYB", "10019", webhook_url=webhook_url, webhook_secret=secret),
            dealer_line("CHI", "60601", state="IL"),
        ),
        webhook_networks=TEST_WEBHOOK_NETWORKS,
    )
    assert report.applied, report.rejected
    return dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())


@pytest.fixture
def dealers(session, monkeypatch) -> dict[str, int]:
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    return load_dealers(session)


@pytest.fixture
def keys(session, dealers) -> dict[str, dict[str, str]]:
    made = {code: create_key(session, "dealer", code)[1] for code in ("NYA", "NYB")}
    made["admin"] = create_key(session, "admin")[1]
    return {who: {"Authorization": f"Bearer {key}"} for who, key in made.items()}


def sign_up(client, session, email: str, zip5: str = "10001") -> int:
    """A signup through the API, dated to the clock's start; returns the lead's id."""
    reply = client.post("/api/v1/signups", json=valid_signup(email=email, zip=zip5))
    assert reply.status_code == 202, reply.get_json()
    session.expire_all()
    lead_id = session.scalar(sa.select(Lead.id).where(Lead.email_key == email.lower()))
    session.execute(sa.update(Lead).where(Lead.id == lead_id).values(created_at=START))
    session.commit()
    return lead_id


def run_at(app, clock: ManualClock, moment: datetime):
    clock.set(moment)
    return follow_up_for_app(app)


def notices(session, lead_id: int) -> list[tuple[str, str | None]]:
    """(kind, dealer code) of every outbox row of the lead, in order."""
    session.rollback()
    return [
        (kind, code)
        for kind, code in session.execute(
            sa.select(OutboxMessage.kind, Dealer.code)
            .outerjoin(Dealer, Dealer.id == OutboxMessage.dealer_id)
            .where(OutboxMessage.lead_id == lead_id)
            .order_by(OutboxMessage.id)
        )
    ]


def lead_of(session, lead_id: int) -> Lead:
    session.rollback()
    return session.get(Lead, lead_id, populate_existing=True)
