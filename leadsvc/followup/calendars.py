"""Each dealer's response target and business calendar, as the settings and its row give them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.dealers.models import Dealer
from leadsvc.dealers.opening_hours import DEFAULT_OPENING_HOURS, parse_opening_hours
from leadsvc.followup.hours import Calendar, Holidays
from leadsvc.followup.models import Holiday
from leadsvc.followup.zones import dealer_zone


def target_hours(settings, dealer: Dealer) -> float:
    """The dealer's response target in hours: its own, else LEAD_RESPONSE_HOURS."""
    return dealer.response_hours or settings.lead_response_hours


class Calendars:
    """Calendars of the dealers one pass looks at, built once each (holidays read once)."""

    def __init__(self, session: Session, settings):
        self.settings = settings
        self._extra: dict[int | None, set[date]] = defaultdict(set)
        for dealer_id, day in session.execute(sa.select(Holiday.dealer_id, Holiday.day)):
            self._extra[dealer_id].add(day)
        self._built: dict[int, Calendar] = {}

    def of(self, dealer: Dealer) -> Calendar:
        calendar = self._built.get(dealer.id)
        if calendar is None:
            calendar = self._built[dealer.id] = self._build(dealer)
        return calendar

    def _build(self, dealer: Dealer) -> Calendar:
        zone = dealer_zone(dealer)
        if not self.settings.business_hours:
            return Calendar(zone, {}, always_open=True)
        week = parse_opening_hours(dealer.opening_hours or DEFAULT_OPENING_HOURS)
        extra = frozenset(self._extra[None] | self._extra[dealer.id])
        return Calendar(zone, week, Holidays(extra))

    def target_seconds(self, dealer: Dealer) -> float:
        return target_hours(self.settings, dealer) * 3600
