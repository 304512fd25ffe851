"""Who covers which ZIP: every ZIP centre with the dealer the routing table gives it, and the
dealers themselves, for the coverage map."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.dealers.models import Dealer, RoutingVersion, ZipRoute
from leadsvc.geo.models import ZipCode


@dataclass(frozen=True, slots=True)
class CoveredZip:
    zip5: str
    state: str
    latitude: float
    longitude: float
    #: None: unassigned (no active dealer takes it).
    dealer_id: int | None


@dataclass(frozen=True)
class MappedDealer:
    id: int
    code: str
    name: str
    city: str
    state: str
    latitude: float
    longitude: float
    active: bool
    zips: int


@dataclass(frozen=True)
class Coverage:
    zips: list[CoveredZip]
    dealers: list[MappedDealer]


def coverage_stamp(session: Session) -> tuple[int, datetime | None, int]:
    """What the coverage depends on: the routing version, the last dealer change and the number
    of dealers. Equal stamps mean an equal coverage (a map drawn for one can be kept)."""
    version = session.scalar(sa.select(sa.func.max(RoutingVersion.version))) or 0
    changed, count = session.execute(
        sa.select(sa.func.max(Dealer.updated_at), sa.func.count(Dealer.id))
    ).one()
    return version, changed, count


def coverage(session: Session) -> Coverage:
    """Every ZIP with a map position and its routed dealer; every dealer with its ZIP count."""
    rows = session.execute(
        sa.select(
            ZipCode.zip5, ZipCode.state, ZipCode.latitude, ZipCode.longitude, ZipRoute.dealer_id
        )
        .outerjoin(ZipRoute, ZipRoute.zip5 == ZipCode.zip5)
        .where(ZipCode.latitude.is_not(None), ZipCode.longitude.is_not(None))
        .order_by(ZipCode.zip5)
    ).all()
    zips = [CoveredZip(*row) for row in rows]
    counts: dict[int, int] = {}
    for covered in zips:
        if covered.dealer_id is not None:
            counts[covered.dealer_id] = counts.get(covered.dealer_id, 0) + 1
    dealers = [
        MappedDealer(
            d.id,
            d.code,
            d.name,
            d.city,
            d.state,
            d.latitude,
            d.longitude,
            d.active,
            counts.get(d.id, 0),
        )
        for d in session.scalars(sa.select(Dealer).order_by(Dealer.code))
    ]
    return Coverage(zips, dealers)
