"""A dealer's leads: the feed (pages that skip and repeat nothing), one lead, acknowledgement.

Every query here is filtered by the calling dealer's id; a lead of another dealer, an unassigned
lead and a missing id are indistinguishable. Leads awaiting double opt-in confirmation are not
served; a withdrawn person's lead, or one who asked not to be contacted by the dealer, is
served without its personal fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.commit_order import next_delivery_seq, settled_below
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer, LeadMove, ZipRoute
from leadsvc.geo.distance_units import km_to_miles
from leadsvc.leads.models import Lead

#: Consent states a dealer may see a lead in (a pending double opt-in is not yet a lead).
SERVED_STATES = ("given", "confirmed", "withdrawn", "erased")
#: States in which the person's personal fields are withheld.
WITHHELD_STATES = ("withdrawn", "erased")
#: The person's own data: null while consent is withdrawn or the person is erased (the ZIP is
#: part of their address; distance and routing reason are the dealer's, and stay).
PERSONAL_FIELDS = ("first_name", "last_name", "email", "zip", "zip4", "interests", "source")
MAX_PAGE = 1000


@dataclass(frozen=True)
class FeedPage:
    leads: list[dict[str, Any]]
    #: Where the next page starts: after the last lead served (or where this page started, when
    #: it was empty). None only when nothing was served and no position was given.
    next_position: tuple[int, int] | None
    #: More leads are ready right now beyond this page.
    more: bool = False


def lead_record(lead: Lead) -> dict[str, Any]:
    """What a dealer sees of a lead."""
    withheld = lead.consent_status in WITHHELD_STATES or lead.dealer_contact is False
    record = {
        "id": lead.id,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "zip": lead.zip5,
        "zip4": lead.zip4,
        "distance_km": lead.distance_km,
        "distance_miles": km_to_miles(lead.distance_km),
        "routing_reason": lead.routing_reason,
        "consent": lead.consent_status,
        "email_status": "bounced" if lead.bounced_at is not None else "ok",
        "dealer_contact": lead.dealer_contact is not False,
        "created_at": lead.created_at,
        "acknowledged_at": lead.acknowledged_at,
        "interests": lead.interests or [],
        "source": lead.source,
    }
    if withheld:
        record.update({name: None for name in PERSONAL_FIELDS})
    return record


def _own(dealer_id: int):
    return (Lead.dealer_id == dealer_id) & Lead.consent_status.in_(SERVED_STATES)


def dealer_feed(
    session: Session,
    dealer_id: int,
    *,
    after: tuple[int, int] | None,
    limit: int,
    since: datetime | None = None,
    only_new: bool = True,
) -> FeedPage:
    """The dealer's leads in feed order (oldest first), after the cursor position `after`.

    Only positions below the horizon are served (see `leadsvc.commit_order`), so a position
    handed out is never overtaken by a lead that commits later.
    """
    query = sa.select(Lead).where(_own(dealer_id))
    if only_new:
        query = query.where(Lead.acknowledged_at.is_(None))
    if since is not None:
        query = query.where(Lead.created_at >= since)
    horizon = settled_below(session)
    if horizon is not None:
        query = query.where(Lead.delivery_seq < horizon)
    if after is not None:
        query = query.where(sa.tuple_(Lead.delivery_seq, Lead.id) > sa.tuple_(*after))
    rows = list(session.scalars(query.order_by(Lead.delivery_seq, Lead.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    # A position is handed out at the end of the feed too: a consumer keeps it and polls on from
    # it, and a lead committed later (behind the horizon until then) comes after it.
    next_position = (rows[-1].delivery_seq, rows[-1].id) if rows else after
    return FeedPage([lead_record(lead) for lead in rows], next_position, more)


def dealer_lead(session: Session, dealer_id: int, lead_id: int) -> dict[str, Any] | None:
    lead = session.scalar(sa.select(Lead).where(_own(dealer_id), Lead.id == lead_id))
    return None if lead is None else lead_record(lead)


def acknowledge(
    session: Session, dealer_id: int, lead_ids: Iterable[int]
) -> tuple[list[int], list[int]]:
    """Mark the dealer's leads acknowledged (idempotent); returns (acknowledged, not found)."""
    wanted = sorted(set(lead_ids))
    # Ownership is checked by the UPDATE itself: a lead that moves to another dealer while this
    # runs (a deactivation re-routes it) is re-checked on its new row and left alone, instead of
    # being acknowledged on the new dealer's behalf. A lead acknowledged here is not moved (a
    # move waits for this row and re-checks), so the SELECT after it sees the same ownership.
    session.execute(
        sa.update(Lead)
        .where(_own(dealer_id), Lead.id.in_(wanted), Lead.acknowledged_at.is_(None))
        .values(acknowledged_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    owned = set(session.scalars(sa.select(Lead.id).where(_own(dealer_id), Lead.id.in_(wanted))))
    session.commit()
    return sorted(owned), [lead_id for lead_id in wanted if lead_id not in owned]


def reassign_lead(session: Session, lead_id: int, dealer_code: str | None) -> Lead:
    """Move a lead to a dealer (or back to the unassigned pool) by hand; the move is recorded."""
    lead = _locked_lead(session, lead_id)
    dealer_id = None
    if dealer_code is not None:
        dealer_id = session.scalar(
            sa.select(Dealer.id).where(Dealer.code == dealer_code.upper(), Dealer.active)
        )
        if dealer_id is None:
            raise ValueError(f"no active dealer with code {dealer_code.upper()}")
    routing = {"routing_reason": "manual" if dealer_id else "unassigned", "distance_km": None}
    return _move(session, lead, dealer_id, routing)


def route_again(session: Session, lead_id: int) -> Lead:
    """Give a lead to the dealer its ZIP routes to now (after dealers changed), recorded as a
    move by hand; ValueError if no dealer takes its ZIP."""
    lead = _locked_lead(session, lead_id)
    route = session.get(ZipRoute, lead.zip5) if lead.zip5 else None
    if route is None:
        session.rollback()
        raise ValueError(f"no active dealer takes ZIP {lead.zip5 or '(none)'}")
    routing = {"routing_reason": route.reason, "distance_km": route.distance_km}
    return _move(session, lead, route.dealer_id, routing)


def _locked_lead(session: Session, lead_id: int) -> Lead:
    lead = session.scalar(sa.select(Lead).where(Lead.id == lead_id).with_for_update())
    if lead is None:
        raise LookupError(f"no lead {lead_id}")
    return lead


def _move(session: Session, lead: Lead, dealer_id: int | None, routing: dict) -> Lead:
    """Record the move by hand and give the lead to `dealer_id` as new (commits)."""
    if lead.dealer_id == dealer_id:
        session.commit()
        return lead
    session.add(
        LeadMove(
            lead_id=lead.id,
            from_dealer_id=lead.dealer_id,
            to_dealer_id=dealer_id,
            reason="admin_reassigned",
            moved_at=utcnow(),
        )
    )
    dialect = session.get_bind().dialect.name
    session.execute(
        sa.update(Lead)
        .where(Lead.id == lead.id)
        .values(
            dealer_id=dealer_id,
            **routing,
            acknowledged_at=None,
            delivery_seq=next_delivery_seq(dialect),
        )
    )
    session.commit()
    session.refresh(lead)
    return lead


def unassigned_leads(
    session: Session, *, after: int | None, limit: int
) -> tuple[list[dict], int | None]:
    """The unassigned pool (admin view), oldest first, paged by id."""
    query = sa.select(Lead).where(Lead.dealer_id.is_(None))
    if after is not None:
        query = query.where(Lead.id > after)
    rows = list(session.scalars(query.order_by(Lead.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [lead_record(lead) for lead in rows], rows[-1].id if more else None
