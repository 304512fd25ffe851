"""Figures for the console's overview: signups per day, by campaign, consent status, dealers."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.models import ConsentEvent, ConsentSeal
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def signups_per_day(session: Session, days: int) -> list[tuple[date, int, int]]:
    """(day, new people, repeat signups) for each of the last `days` days, oldest first. A
    signup is a `given` consent event; it is new when its lead was created that day."""
    since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    given = dict(
        session.execute(
            sa.select(sa.func.date(ConsentEvent.occurred_at), sa.func.count())
            .where(ConsentEvent.event_type == "given", ConsentEvent.occurred_at >= since)
            .group_by(sa.func.date(ConsentEvent.occurred_at))
        ).all()
    )
    new = dict(
        session.execute(
            sa.select(sa.func.date(Lead.created_at), sa.func.count())
            .where(Lead.created_at >= since)
            .group_by(sa.func.date(Lead.created_at))
        ).all()
    )
    given = {_day(k): v for k, v in given.items()}
    new = {_day(k): v for k, v in new.items()}
    first = since.date()
    rows = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        fresh = new.get(day, 0)
        rows.append((day, fresh, max(given.get(day, 0) - fresh, 0)))
    return rows


def signups_by_campaign(session: Session, days: int, limit: int = 10) -> list[tuple[str, int]]:
    """New people of the last `days` days by UTM campaign (else source), most first."""
    since = utcnow() - timedelta(days=days)
    campaign = sa.func.coalesce(Lead.utm["utm_campaign"].as_string(), "(no campaign)")
    return [
        (name, count)
        for name, count in session.execute(
            sa.select(campaign, sa.func.count())
            .where(Lead.created_at >= since)
            .group_by(campaign)
            .order_by(sa.func.count().desc())
            .limit(limit)
        )
    ]


def consent_split(session: Session) -> list[tuple[str, int]]:
    """Leads by consent status."""
    rows = session.execute(
        sa.select(Lead.consent_status, sa.func.count())
        .group_by(Lead.consent_status)
        .order_by(Lead.consent_status)
    )
    return [(status, count) for status, count in rows]


def leads_per_dealer(session: Session) -> list[tuple[str, int]]:
    """Leads per dealer code, most first; the unassigned pool as "unassigned"."""
    counts = session.execute(
        sa.select(Lead.dealer_id, sa.func.count()).group_by(Lead.dealer_id)
    ).all()
    codes = {row.id: row.code for row in session.execute(sa.select(Dealer.id, Dealer.code))}
    rows = [
        (codes.get(dealer_id, "unassigned") if dealer_id else "unassigned", n)
        for dealer_id, n in counts
    ]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def last_seal(session: Session) -> ConsentSeal | None:
    return session.scalar(sa.select(ConsentSeal).order_by(ConsentSeal.seq.desc()).limit(1))
