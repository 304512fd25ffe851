"""Figures for the console's overview: signups per day, by campaign, consent status, dealers,
the ledger's last seal. Days are UTC days."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.models import ConsentEvent, ConsentSeal
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _utc_day(session: Session, column):
    """The UTC calendar day of a timestamp column (PostgreSQL's own days follow its time zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", column))
    return sa.func.date(column)


def _first_day(days: int) -> datetime:
    return (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def signups_per_day(session: Session, days: int) -> list[tuple[date, int, int]]:
    """(day, new people, repeat signups) for each of the last `days` days, oldest first. A
    signup is a `given` consent event; it is new when its lead was created that day."""
    since = _first_day(days)
    given_day, new_day = (
        _utc_day(session, ConsentEvent.occurred_at),
        _utc_day(session, Lead.created_at),
    )
    given = dict(
        session.execute(
            sa.select(given_day, sa.func.count())
            .where(ConsentEvent.event_type == "given", ConsentEvent.occurred_at >= since)
            .group_by(given_day)
        ).all()
    )
    new = dict(
        session.execute(
            sa.select(new_day, sa.func.count()).where(Lead.created_at >= since).group_by(new_day)
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


def _campaign():
    """A lead's UTM campaign, else its UTM source, else "(no campaign)"."""
    return sa.func.coalesce(
        Lead.utm["utm_campaign"].as_string(),
        sa.literal("source: ") + Lead.utm["utm_source"].as_string(),
        "(no campaign)",
    )


def _campaign_counts(session: Session, days: int) -> tuple[date, dict[tuple[date, str], int]]:
    """The first day, and new people of each (day, campaign) of the last `days` days."""
    since, campaign = _first_day(days), _campaign()
    day = _utc_day(session, Lead.created_at)
    counts: dict[tuple[date, str], int] = {}
    for value, name, count in session.execute(
        sa.select(day, campaign, sa.func.count())
        .where(Lead.created_at >= since)
        .group_by(day, campaign)
    ):
        counts[_day(value), name] = counts.get((_day(value), name), 0) + count
    return since.date(), counts


def _by_campaign(counts: dict[tuple[date, str], int]) -> list[tuple[str, int]]:
    """Campaigns with their totals, most first (then by name)."""
    totals: dict[str, int] = {}
    for (_, name), count in counts.items():
        totals[name] = totals.get(name, 0) + count
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def _per_day(first: date, counts, days: int, top: int):
    ranked = [name for name, _ in _by_campaign(counts)]
    shown, rest = ranked[:top], set(ranked[top:])
    columns = shown + (["other"] if rest else [])
    rows = []
    for offset in range(days):
        on = first + timedelta(days=offset)
        values = [counts.get((on, name), 0) for name in shown]
        if rest:
            values.append(sum(counts.get((on, name), 0) for name in rest))
        rows.append((on, values))
    return columns, rows


def signups_by_campaign(session: Session, days: int, limit: int = 10) -> list[tuple[str, int]]:
    """New people of the last `days` days by UTM campaign (else source), most first."""
    return _by_campaign(_campaign_counts(session, days)[1])[:limit]


def campaigns_per_day(
    session: Session, days: int, top: int = 5
) -> tuple[list[str], list[tuple[date, list[int]]]]:
    """New people per day by campaign: the `top` campaigns of the period by name, the rest as
    "other"; returns the names and, for each day oldest first, the counts in that order."""
    first, counts = _campaign_counts(session, days)
    return _per_day(first, counts, days, top)


def campaign_figures(session: Session, days: int, top: int = 5, limit: int = 10):
    """`signups_by_campaign` and `campaigns_per_day` from one pass over the period's leads:
    (by campaign, (names, rows))."""
    first, counts = _campaign_counts(session, days)
    return _by_campaign(counts)[:limit], _per_day(first, counts, days, top)


def lead_counts(session: Session) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Leads by consent status, and per dealer code (most first; the unassigned pool as
    "unassigned"), from one pass over the leads."""
    status_counts: dict[str, int] = {}
    dealer_counts: dict[int | None, int] = {}
    for status, dealer_id, count in session.execute(
        sa.select(Lead.consent_status, Lead.dealer_id, sa.func.count()).group_by(
            Lead.consent_status, Lead.dealer_id
        )
    ):
        status_counts[status] = status_counts.get(status, 0) + count
        dealer_counts[dealer_id] = dealer_counts.get(dealer_id, 0) + count
    codes = dict(session.execute(sa.select(Dealer.id, Dealer.code)).all())
    dealers = [
        (codes.get(dealer_id, "unassigned") if dealer_id else "unassigned", n)
        for dealer_id, n in dealer_counts.items()
    ]
    return sorted(status_counts.items()), sorted(dealers, key=lambda row: (-row[1], row[0]))


def consent_split(session: Session) -> list[tuple[str, int]]:
    """Leads by consent status."""
    return lead_counts(session)[0]


def leads_per_dealer(session: Session) -> list[tuple[str, int]]:
    """Leads per dealer code, most first; the unassigned pool as "unassigned"."""
    return lead_counts(session)[1]


def last_seal(session: Session) -> ConsentSeal | None:
    return session.scalar(sa.select(ConsentSeal).order_by(ConsentSeal.seq.desc()).limit(1))
