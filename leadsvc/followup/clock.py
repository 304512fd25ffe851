"""The follow-up's clock: the system's by default; tests put in one they move by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from flask import Flask

from leadsvc.db import utcnow

_KEY = "leadsvc.followup.clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class ManualClock:
    """A clock that stands still until moved (`advance`, `set`)."""

    def __init__(self, start: datetime):
        self.current = start

    def now(self) -> datetime:
        return self.current

    def set(self, moment: datetime) -> None:
        self.current = moment

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def use_clock(app: Flask, clock: Clock) -> None:
    """Make every follow-up decision of `app` read `clock`."""
    app.extensions[_KEY] = clock


def clock_of(app: Flask) -> Clock:
    return app.extensions.get(_KEY) or SystemClock()
