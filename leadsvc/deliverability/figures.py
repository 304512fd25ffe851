"""Figures of what came back: bounces and complaints by kind and day, one address's bounce
history, and the bounce rate per day (of the emails sent that day, the share that bounced)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.deliverability.models import BounceEvent
from leadsvc.deliverability.parse import COMPLAINT, HARD, SOFT
from leadsvc.outbox.messages import KINDS, SENT
from leadsvc.outbox.models import OutboxMessage

EVENT_KINDS = (HARD, SOFT, COMPLAINT)
#: The outbox kinds that are emails (the others are webhooks, which cannot bounce).
EMAIL_KINDS = tuple(kind for kind in KINDS if kind.endswith("_email"))


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _since(days: int) -> datetime:
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days - 1)


def events_by_kind_and_day(session: Session, days: int) -> dict[date, dict[str, int]]:
    """For each of the last `days` days (oldest first, today included): events by kind."""
    since = _since(days)
    day = sa.func.date(BounceEvent.received_at)
    counts = session.execute(
        sa.select(day, BounceEvent.kind, sa.func.count())
        .where(BounceEvent.received_at >= since)
        .group_by(day, BounceEvent.kind)
    ).all()
    table = {since.date() + timedelta(days=n): dict.fromkeys(EVENT_KINDS, 0) for n in range(days)}
    for when, kind, count in counts:
        table.setdefault(_day(when), dict.fromkeys(EVENT_KINDS, 0))[kind] = count
    return table


def events_by_kind(session: Session) -> dict[str, int]:
    """Every event ever recorded, by kind."""
    rows = session.execute(
        sa.select(BounceEvent.kind, sa.func.count()).group_by(BounceEvent.kind)
    ).all()
    return {**dict.fromkeys(EVENT_KINDS, 0), **dict(rows)}


@dataclass(frozen=True)
class DayRate:
    day: date
    sent: int
    bounced: int

    @property
    def rate(self) -> float:
        """The share of the day's emails that bounced (0 when none was sent)."""
        return self.bounced / self.sent if self.sent else 0.0


def bounce_rate_per_day(session: Session, days: int) -> list[DayRate]:
    """For each of the last `days` days: emails sent that day, and how many of them bounced
    (hard or soft, whenever the bounce came back), oldest first."""
    since = _since(days)
    sent_day = sa.func.date(OutboxMessage.sent_at)
    sent_today = (OutboxMessage.status == SENT) & (OutboxMessage.sent_at >= since)
    emails = OutboxMessage.kind.in_(EMAIL_KINDS)
    sent = dict(
        session.execute(
            sa.select(sent_day, sa.func.count()).where(sent_today, emails).group_by(sent_day)
        ).all()
    )
    bounced = dict(
        session.execute(
            sa.select(sent_day, sa.func.count(sa.distinct(OutboxMessage.id)))
            .join(BounceEvent, BounceEvent.outbox_id == OutboxMessage.id)
            # A bounce comes back after its email was sent: the recent ones only.
            .where(sent_today, emails, BounceEvent.kind.in_((HARD, SOFT)))
            .where(BounceEvent.received_at >= since)
            .group_by(sent_day)
        ).all()
    )
    sent = {_day(k): v for k, v in sent.items()}
    bounced = {_day(k): v for k, v in bounced.items()}
    days_shown = [since.date() + timedelta(days=n) for n in range(days)]
    return [DayRate(day, sent.get(day, 0), bounced.get(day, 0)) for day in days_shown]


def bounce_history(session: Session, lead_id: int) -> list[dict[str, Any]]:
    """Every bounce and complaint about the lead's address, oldest first (the subject lookup)."""
    events = session.scalars(
        sa.select(BounceEvent).where(BounceEvent.lead_id == lead_id).order_by(BounceEvent.id)
    )
    return [
        {
            "kind": event.kind,
            "received_at": event.received_at,
            "status": event.status,
            "diagnostic": event.diagnostic,
            "source": event.source,
            "outbox_id": event.outbox_id,
            "suppressed": event.suppressed,
        }
        for event in events
    ]
