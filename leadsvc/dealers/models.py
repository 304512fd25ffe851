"""Dealer directory, territory overrides, the precomputed ZIP routing table and lead moves."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, UTCDateTime, utcnow


class Dealer(Base):
    """A MINI dealer. Coordinates come from its ZIP's centre unless given explicitly."""

    __tablename__ = "dealers"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    street: Mapped[str] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(2))
    zip5: Mapped[str] = mapped_column(sa.String(5))
    phone: Mapped[str] = mapped_column(sa.String(32))
    #: The dealer CRM's lead inbox (ADF XML arrives here).
    lead_email: Mapped[str] = mapped_column(sa.String(254))
    webhook_url: Mapped[str | None] = mapped_column(sa.String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(sa.String(200))
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    #: "zip" when the coordinates are the ZIP's centre, "explicit" when given in the import.
    coordinates_from: Mapped[str] = mapped_column(sa.String(8))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    #: Follow-up: hours to answer a lead (None: LEAD_RESPONSE_HOURS), opening hours such as
    #: "mon-fri 09:00-18:00; sat 09:00-17:00" (None: the default), IANA time zone (None: from
    #: the state and longitude). See leadsvc.followup.
    response_hours: Mapped[float | None] = mapped_column(sa.Float)
    opening_hours: Mapped[str | None] = mapped_column(sa.String(200))
    time_zone: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Territory(Base):
    """A ZIP assigned to a dealer (its primary market area); wins over distance while active."""

    __tablename__ = "territories"

    zip5: Mapped[str] = mapped_column(sa.String(5), primary_key=True)
    dealer_id: Mapped[int] = mapped_column(sa.ForeignKey("dealers.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Whether this ZIP's leads move on when its dealer misses the response target (by default
    #: a territory's leads are only reminded).
    reassign_overdue: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )


class RoutingVersion(Base):
    """One build of the routing table; the highest version is the one in force."""

    __tablename__ = "routing_versions"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dealers: Mapped[int] = mapped_column(sa.Integer)
    routed_zips: Mapped[int] = mapped_column(sa.Integer)
    territory_zips: Mapped[int] = mapped_column(sa.Integer)
    build_ms: Mapped[int] = mapped_column(sa.Integer)


class ZipRoute(Base):
    """The dealer that gets a ZIP's leads. ZIPs with no route are unassigned."""

    __tablename__ = "zip_routes"

    zip5: Mapped[str] = mapped_column(sa.String(5), primary_key=True)
    dealer_id: Mapped[int] = mapped_column(sa.ForeignKey("dealers.id"), index=True)
    #: "territory" or "nearest".
    reason: Mapped[str] = mapped_column(sa.String(16))
    distance_km: Mapped[float | None] = mapped_column(sa.Float)
    distance_miles: Mapped[float | None] = mapped_column(sa.Float)


class LeadMove(Base):
    """A lead moved between dealers: `reason` is dealer_deactivated, admin_reassigned, or
    response_overdue (its dealer missed the response target)."""

    __tablename__ = "lead_moves"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    from_dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"))
    to_dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"))
    reason: Mapped[str] = mapped_column(sa.String(32))
    routing_version: Mapped[int | None] = mapped_column(sa.Integer)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
