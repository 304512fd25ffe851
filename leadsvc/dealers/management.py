"""Keeping the dealer directory by hand: search, one dealer created or edited (checked as the CSV
import checks a row), the preview of a deactivation, and reactivation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.dealers.directory import ImportReport, RowOutcome, import_dealer_rows
from leadsvc.dealers.models import Dealer
from leadsvc.dealers.route_builder import RebuildReport, compute_routes, rebuild_routes
from leadsvc.leads.models import Lead


@dataclass(frozen=True)
class DealerPage:
    dealers: list[Dealer]
    #: Leads each dealer of the page holds now, by dealer id.
    lead_counts: dict[int, int]
    total: int
    page: int
    pages: int


def _matching(query: str):
    """Dealers whose code, name, city or ZIP contains the words typed (each word somewhere)."""
    conditions = []
    for word in query.lower().split()[:8]:
        conditions.append(
            sa.or_(
                *(
                    sa.func.lower(column).contains(word, autoescape=True)
                    for column in (Dealer.code, Dealer.name, Dealer.city, Dealer.zip5)
                )
            )
        )
    return sa.and_(sa.true(), *conditions)


def dealer_page(session: Session, query: str = "", page: int = 1, per_page: int = 50) -> DealerPage:
    """One page of the dealers matching `query`, in code order, with their lead counts."""
    where = _matching(query)
    total = session.scalar(sa.select(sa.func.count()).select_from(Dealer).where(where)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    dealers = list(
        session.scalars(
            sa.select(Dealer)
            .where(where)
            .order_by(Dealer.code)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    counts = dict(
        session.execute(
            sa.select(Lead.dealer_id, sa.func.count())
            .where(Lead.dealer_id.in_([d.id for d in dealers]))
            .group_by(Lead.dealer_id)
        ).all()
    )
    return DealerPage(dealers, {d.id: counts.get(d.id, 0) for d in dealers}, total, page, pages)


def dealer_by_code(session: Session, code: str) -> Dealer | None:
    return session.scalar(sa.select(Dealer).where(Dealer.code == code.upper()))


class DealerExists(ValueError):
    """A new dealer was given the code of one already in the directory."""


def save_dealer(session: Session, row: dict[str, str], *, creating: bool) -> ImportReport:
    """Create or edit one dealer from its CSV columns, through the CSV import's own checks.

    Creating refuses a code already taken; editing refuses an unknown one (LookupError). An
    edit that leaves `webhook_secret` empty keeps the stored secret.
    """
    code = row.get("code", "").strip().upper()
    existing = dealer_by_code(session, code) if code else None
    if creating and existing is not None:
        raise DealerExists(f"code {code} is already taken by {existing.name}")
    if not creating and existing is None:
        raise LookupError(f"no dealer with code {code}")
    row = {name: str(value or "").strip() for name, value in row.items()}
    if existing is not None and row.get("webhook_url") and not row.get("webhook_secret"):
        row["webhook_secret"] = existing.webhook_secret or ""
    return import_dealer_rows(session, [(1, row)])


def outcome_of(report: ImportReport) -> RowOutcome:
    return report.rows[0]


@dataclass(frozen=True)
class Destination:
    #: None: the unassigned pool.
    code: str | None
    name: str | None
    leads: int


@dataclass(frozen=True)
class DeactivationPreview:
    code: str
    moving: int
    destinations: list[Destination]


def deactivation_preview(session: Session, code: str) -> DeactivationPreview:
    """Where the dealer's leads would go if it were deactivated now (nothing is changed).

    The same leads `deactivate_dealer` moves (not yet acknowledged), each to its ZIP's route in
    the routing table computed without this dealer.
    """
    dealer = dealer_by_code(session, code)
    if dealer is None:
        raise LookupError(f"no dealer with code {code.upper()}")
    moving = sa.select(Lead.zip5).where(Lead.dealer_id == dealer.id, Lead.acknowledged_at.is_(None))
    zips = Counter(session.scalars(moving))
    if not zips:
        return DeactivationPreview(dealer.code, 0, [])
    routes = compute_routes(session, excluding=dealer.id, only=moving.distinct())
    by_dealer: Counter[int | None] = Counter()
    for zip5, count in zips.items():
        route = routes.get(zip5) if zip5 else None
        by_dealer[route[0] if route else None] += count
    names = dict(
        (dealer_id, (c, n))
        for dealer_id, c, n in session.execute(
            sa.select(Dealer.id, Dealer.code, Dealer.name).where(
                Dealer.id.in_([d for d in by_dealer if d is not None])
            )
        )
    )
    destinations = [
        Destination(*(names[d] if d is not None else (None, None)), leads)
        for d, leads in sorted(by_dealer.items(), key=lambda item: (-item[1], item[0] or 0))
    ]
    return DeactivationPreview(dealer.code, sum(zips.values()), destinations)


def reactivate_dealer(session: Session, code: str) -> RebuildReport | None:
    """Make a deactivated dealer active again and rebuild routing (None: it was active).

    Its ZIPs route to it again from the new routing version on; leads moved away stay where
    they are, and the follow-up clocks of its open turns restart on the next pass.
    """
    dealer = session.scalar(sa.select(Dealer).where(Dealer.code == code.upper()).with_for_update())
    if dealer is None:
        raise LookupError(f"no dealer with code {code.upper()}")
    if dealer.active:
        session.rollback()
        return None
    dealer.active = True
    dealer.updated_at = utcnow()
    session.flush()
    routes = rebuild_routes(session)
    session.commit()
    return routes
