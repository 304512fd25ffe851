"""The routing table on the request path: ZIP -> dealer, in memory, current to a version stamp.

`routing_table()` holds the table built by `route_builder.rebuild_routes` in memory and reloads it
when it sees a newer version (checked at most every `REFRESH_SECONDS`), so a rebuild in any
process reaches every web worker without a restart. No geocoding, numpy or pandas here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from leadsvc.dealers.models import Dealer, RoutingVersion, ZipRoute
from leadsvc.geo.directory import ZipDirectory, zip_directory

#: How often a process checks for a newer routing version, in seconds.
REFRESH_SECONDS = 2.0
log = logging.getLogger(__name__)
_NO_DEALER = 0
_REASONS = ("nearest", "territory")


@dataclass(frozen=True, slots=True)
class Route:
    dealer_id: int
    dealer_code: str
    dealer_name: str
    reason: str
    distance_km: float | None
    distance_miles: float | None


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value


class RoutingTable:
    """One version of the routing table, as columns indexed by the ZIP directory's row numbers."""

    def __init__(self, version: int, directory: ZipDirectory, dealers: dict[int, tuple[str, str]]):
        self.version = version
        self._directory = directory
        self._dealers = dealers
        size = len(directory)
        self._dealer = array("i", bytes(4 * size))  # 0: no dealer
        self._reason = bytearray(size)
        self._km = array("d", [math.nan]) * size
        self._miles = array("d", [math.nan]) * size
        self._routed = 0
        #: Route objects built so far (at most one per routed ZIP, a few MB at worst).
        self._built: dict[str, Route] = {}

    def __len__(self) -> int:
        return self._routed

    def _set(self, zip5: str, dealer_id: int, reason: str, km, miles) -> None:
        row = self._directory.row_of(zip5)
        if row is None:  # a route for a ZIP this process does not know: ignore it
            return
        self._routed += self._dealer[row] == _NO_DEALER
        self._dealer[row] = dealer_id
        self._reason[row] = _REASONS.index(reason)
        self._km[row] = math.nan if km is None else km
        self._miles[row] = math.nan if miles is None else miles

    def route_for_zip(self, zip5: str) -> Route | None:
        """The dealer that gets this ZIP's leads, or None (the lead goes to the unassigned pool)."""
        route = self._built.get(zip5)
        if route is not None:
            return route
        row = self._directory.row_of(zip5)
        if row is None or self._dealer[row] == _NO_DEALER:
            return None
        dealer_id = self._dealer[row]
        code, name = self._dealers[dealer_id]
        route = self._built[zip5] = Route(
            dealer_id,
            code,
            name,
            _REASONS[self._reason[row]],
            _optional(self._km[row]),
            _optional(self._miles[row]),
        )
        return route

    @classmethod
    def from_database(cls, session: Session, directory: ZipDirectory) -> RoutingTable:
        # The version first: if a rebuild commits between the two reads, the next check sees a
        # newer version than the one recorded here and reloads.
        version = session.scalar(sa.select(sa.func.max(RoutingVersion.version))) or 0
        dealers = {
            dealer_id: (code, name)
            for dealer_id, code, name in session.execute(
                sa.select(Dealer.id, Dealer.code, Dealer.name)
            )
        }
        table = cls(version, directory, dealers)
        for row in (
            session.connection()
            .execution_options(yield_per=2000)
            .execute(
                sa.select(
                    ZipRoute.zip5,
                    ZipRoute.dealer_id,
                    ZipRoute.reason,
                    ZipRoute.distance_km,
                    ZipRoute.distance_miles,
                )
            )
        ):
            table._set(*row)
        return table


class _RoutingCache:
    """Per-app holder that reloads the table when the stored version moves on."""

    def __init__(self) -> None:
        self.table: RoutingTable | None = None
        self.checked_at = 0.0
        self.lock = threading.Lock()

    def fresh(self) -> bool:
        return self.table is not None and time.monotonic() - self.checked_at < REFRESH_SECONDS


_EXTENSION_KEY = "leadsvc.routing"


def routing_table(app: Flask | None = None, *, force_check: bool = False) -> RoutingTable:
    """The app's routing table, current to within `REFRESH_SECONDS` of the latest rebuild."""
    cache: _RoutingCache | None = (app or current_app).extensions.get(_EXTENSION_KEY)
    if cache is not None and not force_check and cache.fresh():
        return cache.table
    from leadsvc.extensions import db

    app = app or current_app._get_current_object()
    if cache is None:
        cache = app.extensions.setdefault(_EXTENSION_KEY, _RoutingCache())
    with cache.lock:
        if not force_check and cache.fresh():
            return cache.table
        directory = zip_directory(app)
        try:
            with db.sessionmaker(app)() as session:
                latest = session.scalar(sa.select(sa.func.max(RoutingVersion.version))) or 0
                if cache.table is None or cache.table.version != latest:
                    cache.table = RoutingTable.from_database(session, directory)
        except sa.exc.DBAPIError as error:
            if cache.table is None:
                raise
            # The table in memory still routes; the next request checks again. (A pooled
            # connection PostgreSQL closed in a restart fails here first: the signup that
            # follows must not be refused for it.)
            log.warning(
                "routing table not re-checked (%s): version %d kept",
                type(error.orig).__name__,
                cache.table.version,
            )
            return cache.table
        cache.checked_at = time.monotonic()
        return cache.table


def preload_routing(app: Flask) -> RoutingTable:
    """Load the ZIP directory and the routing table now and close the connection used.

    gunicorn calls this in its master (`config/gunicorn.conf.py`) before forking: every worker,
    the first ones and each one restarted after `max_requests`, then starts with both tables in
    memory shared with the master, instead of spending its first signup (~0.2 s, every thread
    of that worker waiting) loading them. The workers still check the version as usual.
    """
    from leadsvc.extensions import db

    try:
        return routing_table(app)
    finally:
        db.engine(app).dispose()  # the master serves nothing: it keeps no connection open
