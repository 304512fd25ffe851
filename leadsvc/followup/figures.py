"""Follow-up figures per dealer: leads received, answered within target, time to answer in
business hours (median, 90th percentile), reminded, moved away, received by reassignment."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.followup.models import ANSWERED, MOVED, FollowUp

FIGURES = (
    "received",
    "answered",
    "answered_within_target",
    "median_answer_hours",
    "p90_answer_hours",
    "reminded",
    "moved_away",
    "received_by_reassignment",
)


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile of `values` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def dealer_figures(
    session: Session, dealer_ids: list[int] | None = None, since: datetime | None = None
) -> dict[int, dict]:
    """Each dealer's figures over the turns it started (since `since`), by dealer id."""
    query = sa.select(
        FollowUp.dealer_id,
        FollowUp.state,
        FollowUp.via,
        FollowUp.reminded_at.is_not(None),
        FollowUp.answer_seconds,
        FollowUp.target_hours,
    )
    if dealer_ids is not None:
        query = query.where(FollowUp.dealer_id.in_(dealer_ids))
    if since is not None:
        query = query.where(FollowUp.started_at >= since)
    counts: dict[int, dict] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    answers: dict[int, list[float]] = defaultdict(list)
    for dealer_id, state, via, reminded, seconds, target in session.execute(query):
        figures = counts[dealer_id]
        figures["received"] += 1
        figures["received_by_reassignment"] += via == "reassignment"
        figures["reminded"] += bool(reminded)
        figures["moved_away"] += state == MOVED
        if state == ANSWERED and seconds is not None:
            figures["answered"] += 1
            figures["answered_within_target"] += seconds <= target * 3600
            answers[dealer_id].append(seconds)
    for dealer_id in dealer_ids or []:
        counts[dealer_id]  # a dealer with no lead yet has zeros
    for dealer_id, figures in counts.items():
        figures["median_answer_hours"] = _hours(percentile(answers[dealer_id], 0.5))
        figures["p90_answer_hours"] = _hours(percentile(answers[dealer_id], 0.9))
    return dict(counts)


def feed_figures(session: Session, dealer_id: int) -> dict:
    """The calling dealer's own figures, as its lead feed shows them."""
    return dealer_figures(session, [dealer_id])[dealer_id]
