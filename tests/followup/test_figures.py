"""The follow-up figures per dealer, counted by the database: every count, the nearest-rank
median and 90th percentile of the answer times, the `since` bound, a dealer without turns."""

from datetime import timedelta

import sqlalchemy as sa

from leadsvc.db import utcnow
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.followup.figures import dealer_figures
from leadsvc.followup.models import FollowUp
from tests.dealers.test_directory import _lead
from tests.factories import dealer_csv, dealer_line


def _turn(session, lead_id, dealer_id, n, **fields) -> None:
    start = fields.pop("started_at", utcnow() - timedelta(days=3))
    session.add(
        FollowUp(
            lead_id=lead_id,
            dealer_id=dealer_id,
            delivery_seq=n,
            via=fields.pop("via", "routing"),
            target_hours=24.0,
            started_at=start,
            remind_at=start + timedelta(hours=12),
            due_at=start + timedelta(hours=24),
            **fields,
        )
    )


def test_each_dealers_figures(session):
    import_dealers(session, dealer_csv(dealer_line("NY1"), dealer_line("NJ1", "07030", state="NJ")))
    ids = dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())
    lead = _lead(session, "p@example.com", "10001", ids["NY1"]).id
    # Answers after 1 to 10 hours and one after 30 (beyond the 24-hour target).
    hours = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 30]
    for n, h in enumerate(hours):
        reminded = utcnow() if h > 12 else None
        _turn(
            session,
            lead,
            ids["NY1"],
            n,
            state="answered",
            answer_seconds=h * 3600.0,
            reminded_at=reminded,
        )
    _turn(session, lead, ids["NY1"], 20, state="moved", reminded_at=utcnow(), via="reassignment")
    _turn(session, lead, ids["NY1"], 21, state="open")
    _turn(
        session,
        lead,
        ids["NY1"],
        22,
        state="answered",
        answer_seconds=600.0,
        started_at=utcnow() - timedelta(days=400),
    )
    session.commit()

    figures = dealer_figures(session, [ids["NY1"], ids["NJ1"]])
    assert figures[ids["NY1"]] == {
        "received": 14,
        "answered": 12,
        "answered_within_target": 11,
        # Nearest rank over 0.17, 1, 2, ... 10, 30 hours: the 6th and the 11th of 12.
        "median_answer_hours": 5.0,
        "p90_answer_hours": 10.0,
        "reminded": 2,
        "moved_away": 1,
        "received_by_reassignment": 1,
    }
    assert figures[ids["NJ1"]] == {
        "received": 0,
        "answered": 0,
        "answered_within_target": 0,
        "median_answer_hours": None,
        "p90_answer_hours": None,
        "reminded": 0,
        "moved_away": 0,
        "received_by_reassignment": 0,
    }
    recent = dealer_figures(session, since=utcnow() - timedelta(days=30))
    assert set(recent) == {ids["NY1"]}
    assert recent[ids["NY1"]]["received"] == 13
    assert (recent[ids["NY1"]]["median_answer_hours"], recent[ids["NY1"]]["p90_answer_hours"]) == (
        6.0,
        10.0,
    )
