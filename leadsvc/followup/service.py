"""The follow-up pass: what the relay and the in-process drainer run on their schedule.

`follow_up_for_app(app)` reads the app's clock once and then, in order: ends turns whose lead
was answered, withdrawn or moved; stops and restarts the clocks of deactivated and reactivated
dealers; sends the reminders that are due; moves the leads whose target passed; opens turns
for leads that reached a dealer. Safe to run from several processes at once (see `turns` and
`actions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session

from leadsvc.extensions import db
from leadsvc.followup.actions import move_overdue, send_reminders
from leadsvc.followup.calendars import Calendars
from leadsvc.followup.clock import clock_of
from leadsvc.followup.turns import close_turns, pause_and_resume, start_turns


@dataclass
class FollowUpReport:
    ended: int = 0
    paused_or_resumed: int = 0
    reminded: int = 0
    moved: int = 0
    started: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


def run_follow_up(session: Session, settings, now: datetime) -> FollowUpReport:
    """One pass over every open turn at the moment `now`; commits as it goes."""
    calendars = Calendars(session, settings)
    report = FollowUpReport()
    report.ended = close_turns(session, calendars, now)
    report.paused_or_resumed = pause_and_resume(session, calendars, now)
    report.reminded = send_reminders(session, now)
    report.moved = move_overdue(session, settings, now)
    report.started = start_turns(session, calendars, now)
    return report


def follow_up_for_app(app: Flask) -> FollowUpReport:
    """Run the follow-up pass on `app`'s database at its clock's current time."""
    with db.sessionmaker(app)() as session:
        return run_follow_up(session, app.config["LEADSVC_SETTINGS"], clock_of(app).now())
