"""Building the ZIP routing table: which dealer gets each US ZIP's leads.

`rebuild_routes` computes, for every ZIP with a centre, the nearest active dealer by great-circle
distance (vectorised with numpy, in blocks), lets territory overrides win while their dealer is
active, and stores the result with a new version stamp. It runs at import, assignment and
deactivation time (CLI, admin API), never per request; numpy is imported only when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from leadsvc.commit_order import next_delivery_seq
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer, LeadMove, RoutingVersion, Territory, ZipRoute
from leadsvc.geo.distance_units import km_to_miles
from leadsvc.geo.models import ZipCode
from leadsvc.leads.models import Lead

#: ZIPs per block of the ZIP x dealer matrix (block x dealers float64 values at a time).
_CHUNK = 4096

#: A ZIP's route: (dealer id, reason, distance in km or None).
Route = tuple[int, str, float | None]


@dataclass(frozen=True)
class RebuildReport:
    version: int
    dealers: int
    routed_zips: int
    territory_zips: int
    build_ms: int


def _lock_rebuilds(session: Session) -> None:
    """One rebuild at a time (PostgreSQL advisory lock; SQLite serialises writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('leadsvc.routes'))"))


def compute_nearest(zip_coords, dealer_coords):
    """For each ZIP (lat, lon) row, the index of the nearest dealer and the distance in km.

    The nearest dealer on the sphere is the one whose unit vector has the largest dot product
    with the ZIP's (one matrix product per block); the distance to it is then the haversine.
    Dealers must be sorted by code: `argmax` keeps the first of equal values, so ties go to the
    lowest code and the result is deterministic. Takes and returns numpy arrays.
    """
    import numpy as np

    from leadsvc.geo.distance import haversine_pairs_km, unit_vectors

    zip_vectors, dealer_vectors = unit_vectors(zip_coords), unit_vectors(dealer_coords).T
    nearest = np.empty(len(zip_coords), dtype=np.int64)
    for start in range(0, len(zip_coords), _CHUNK):
        block = zip_vectors[start : start + _CHUNK] @ dealer_vectors
        nearest[start : start + _CHUNK] = block.argmax(axis=1)
    return nearest, haversine_pairs_km(zip_coords, dealer_coords[nearest])


def _write_routes(session: Session, rows: list[tuple]) -> None:
    """Replace the stored routes: TRUNCATE and one COPY on PostgreSQL, executemany on SQLite."""
    connection = session.connection()
    columns = "zip5, dealer_id, reason, distance_km, distance_miles"
    cursor = connection.connection.driver_connection.cursor()
    if connection.dialect.name == "postgresql":
        cursor.execute("TRUNCATE zip_routes")
        text = "".join(
            "\t".join(r"\N" if value is None else str(value) for value in row) + "\n"
            for row in rows
        )
        with cursor.copy(f"COPY zip_routes ({columns}) FROM STDIN") as copy:
            copy.write(text.encode())
    else:
        cursor.execute("DELETE FROM zip_routes")
        cursor.executemany(f"INSERT INTO zip_routes ({columns}) VALUES (?, ?, ?, ?, ?)", rows)


def _active_dealers(session: Session, excluding: int | None = None) -> Sequence[sa.Row]:
    """Id, latitude and longitude of each active dealer, in code order (see `compute_nearest`)."""
    query = sa.select(Dealer.id, Dealer.latitude, Dealer.longitude).where(Dealer.active)
    if excluding is not None:
        query = query.where(Dealer.id != excluding)
    return session.execute(query.order_by(Dealer.code)).all()


def _mapped_zip_centres(session: Session, only=None) -> dict[str, tuple[float, float]]:
    """Each ZIP with a map position (of `only`, a query of ZIPs, if given), in ZIP order, and
    its (latitude, longitude)."""
    query = sa.select(ZipCode.zip5, ZipCode.latitude, ZipCode.longitude).where(
        ZipCode.latitude.is_not(None), ZipCode.longitude.is_not(None)
    )
    if only is not None:
        query = query.where(ZipCode.zip5.in_(only))
    zips = session.connection().execute(query.order_by(ZipCode.zip5)).all()
    return {zip5: (lat, lon) for zip5, lat, lon in zips}


def _nearest_dealer_routes(
    dealers: Sequence[sa.Row], centre: dict[str, tuple[float, float]]
) -> dict[str, Route]:
    """Route each ZIP with a centre to its nearest dealer, with the distance in km."""
    import numpy as np

    dealer_ids = np.array([d.id for d in dealers])
    dealer_coords = np.array([(d.latitude, d.longitude) for d in dealers], dtype=np.float64)
    zip_codes = list(centre)
    zip_coords = np.array([centre[z] for z in zip_codes], dtype=np.float64).reshape(-1, 2)
    nearest, distance = compute_nearest(zip_coords, dealer_coords)
    ids = dealer_ids[nearest].tolist()
    kms = np.round(distance, 3).tolist()
    return {z: (dealer, "nearest", km) for z, dealer, km in zip(zip_codes, ids, kms, strict=True)}


def _territory_routes(
    session: Session, dealers: Sequence[sa.Row], centre: dict[str, tuple[float, float]], only=None
) -> dict[str, Route]:
    """Route each territory ZIP (of `only`, if given) of one of `dealers` to that dealer (km is
    None without centre)."""
    import numpy as np

    from leadsvc.geo.distance import haversine_pairs_km

    by_id = {d.id: (d.latitude, d.longitude) for d in dealers}
    query = (
        sa.select(Territory.zip5, Territory.dealer_id)
        .join(Dealer, Dealer.id == Territory.dealer_id)
        .where(Dealer.active)
    )
    if only is not None:
        query = query.where(Territory.zip5.in_(only))
    territories = session.execute(query).all()
    routes: dict[str, Route] = {}
    for zip5, dealer_id in territories:
        if dealer_id not in by_id:  # the dealer a preview leaves out
            continue
        km = None
        if zip5 in centre:
            pair = np.array([centre[zip5]]), np.array([by_id[dealer_id]])
            km = round(float(haversine_pairs_km(*pair)[0]), 3)
        routes[zip5] = (dealer_id, "territory", km)
    return routes


def _record_rebuild(session: Session, report: RebuildReport) -> None:
    """Store the rebuild's version stamp and figures as a `RoutingVersion` row."""
    session.add(
        RoutingVersion(
            version=report.version,
            dealers=report.dealers,
            routed_zips=report.routed_zips,
            territory_zips=report.territory_zips,
            build_ms=report.build_ms,
        )
    )
    session.flush()


def _route_max_km() -> float | None:
    """ROUTE_MAX_KM of the running app (None: no limit, also outside an app context)."""
    if not has_app_context():
        return None
    return current_app.config["LEADSVC_SETTINGS"].route_max_km


def compute_routes(
    session: Session, *, excluding: int | None = None, only=None
) -> dict[str, Route]:
    """Each routed ZIP's route from the active dealers (less `excluding`) and territories; of
    the ZIPs `only` selects (a query of ZIP codes), if given, else of every ZIP.

    Writes nothing: `rebuild_routes` stores the result, a deactivation preview only reads it
    (for the ZIPs of the leads that would move: a page, not a rebuild).
    """
    dealers = _active_dealers(session, excluding)
    if not dealers:
        return {}
    centre = _mapped_zip_centres(session, only)
    routes = _nearest_dealer_routes(dealers, centre) if centre else {}
    limit = _route_max_km()
    if limit is not None:  # beyond it from every dealer: the unassigned pool
        routes = {z: r for z, r in routes.items() if r[2] is None or r[2] <= limit}
    routes.update(_territory_routes(session, dealers, centre, only))
    return routes


def rebuild_routes(session: Session) -> RebuildReport:
    """Recompute the routing table from the active dealers and territories (caller commits)."""
    started = time.perf_counter()
    _lock_rebuilds(session)
    routes = compute_routes(session)
    dealers = len(_active_dealers(session))

    version = (session.scalar(sa.select(sa.func.max(RoutingVersion.version))) or 0) + 1
    _write_routes(
        session,
        [(z, d, r, km, km_to_miles(km)) for z, (d, r, km) in routes.items()],
    )
    territory_zips = sum(1 for _, reason, _ in routes.values() if reason == "territory")
    build_ms = int((time.perf_counter() - started) * 1000)
    report = RebuildReport(version, dealers, len(routes), territory_zips, build_ms)
    _record_rebuild(session, report)
    return report


def reroute_unacknowledged(session: Session, dealer_id: int, reason: str) -> int:
    """Move a dealer's not-yet-acknowledged leads to their ZIP's current route; record each move.

    Run after `rebuild_routes` (caller commits). Acknowledged leads stay with their dealer.
    """
    version = session.scalar(sa.select(sa.func.max(RoutingVersion.version)))
    route = sa.select(ZipRoute).where(ZipRoute.zip5 == Lead.zip5).correlate(Lead)
    # Lock the leads to move first: a concurrent acknowledgement then waits and sees the move,
    # and the moves recorded are exactly the leads updated.
    moving = list(
        session.scalars(
            sa.select(Lead.id)
            .where(Lead.dealer_id == dealer_id, Lead.acknowledged_at.is_(None))
            .order_by(Lead.id)
            .with_for_update()
        )
    )
    if not moving:
        return 0
    chosen = Lead.id.in_(moving)
    session.execute(
        sa.insert(LeadMove).from_select(
            ["lead_id", "from_dealer_id", "to_dealer_id", "reason", "routing_version", "moved_at"],
            sa.select(
                Lead.id,
                Lead.dealer_id,
                route.with_only_columns(ZipRoute.dealer_id).scalar_subquery(),
                sa.literal(reason),
                sa.literal(version),
                sa.literal(utcnow(), type_=LeadMove.__table__.c.moved_at.type),
            ).where(chosen),
        )
    )
    return session.execute(
        sa.update(Lead)
        .where(chosen)
        .values(
            dealer_id=route.with_only_columns(ZipRoute.dealer_id).scalar_subquery(),
            distance_km=route.with_only_columns(ZipRoute.distance_km).scalar_subquery(),
            routing_reason=sa.func.coalesce(
                route.with_only_columns(ZipRoute.reason).scalar_subquery(), "unassigned"
            ),
            routing_version=version,
            delivery_seq=next_delivery_seq(session.get_bind().dialect.name),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
