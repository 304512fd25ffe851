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


def _scope(query, dealer_ids: list[int] | None, since: datetime | None):
    if dealer_ids is not None:
        query = query.where(FollowUp.dealer_id.in_(dealer_ids))
    if since is not None:
        query = query.where(FollowUp.started_at >= since)
    return query


_ANSWERED = (FollowUp.state == ANSWERED) & FollowUp.answer_seconds.is_not(None)


def _sqlite_percentiles(session: Session, dealer_ids, since) -> dict[int, tuple]:
    """(median, 90th percentile) of each dealer's answer seconds (SQLite has no
    `percentile_disc`: the answered turns' seconds come back)."""
    answers: dict[int, list[float]] = defaultdict(list)
    query = sa.select(FollowUp.dealer_id, FollowUp.answer_seconds).where(_ANSWERED)
    for dealer_id, seconds in session.execute(_scope(query, dealer_ids, since)):
        answers[dealer_id].append(seconds)
    return {d: (percentile(v, 0.5), percentile(v, 0.9)) for d, v in answers.items()}


def dealer_figures(
    session: Session, dealer_ids: list[int] | None = None, since: datetime | None = None
) -> dict[int, dict]:
    """Each dealer's figures over the turns it started (since `since`), by dealer id: counted
    by the database, a row per dealer (not a row per turn). The percentiles are the nearest
    rank, which is what PostgreSQL's `percentile_disc` computes."""
    count = sa.func.count
    counted = {
        "received": count(),
        "answered": count().filter(_ANSWERED),
        "answered_within_target": count().filter(
            _ANSWERED & (FollowUp.answer_seconds <= FollowUp.target_hours * 3600)
        ),
        "reminded": count().filter(FollowUp.reminded_at.is_not(None)),
        "moved_away": count().filter(FollowUp.state == MOVED),
        "received_by_reassignment": count().filter(FollowUp.via == "reassignment"),
    }
    columns = [column.label(name) for name, column in counted.items()]
    on_postgresql = session.get_bind().dialect.name == "postgresql"
    if on_postgresql:
        columns += [
            sa.func.percentile_disc(share)
            .within_group(FollowUp.answer_seconds)
            .filter(_ANSWERED)
            .label(name)
            for name, share in (("median", 0.5), ("p90", 0.9))
        ]
    query = _scope(sa.select(FollowUp.dealer_id, *columns), dealer_ids, since)
    rows = {row.dealer_id: row for row in session.execute(query.group_by(FollowUp.dealer_id))}
    percentiles = {} if on_postgresql else _sqlite_percentiles(session, dealer_ids, since)
    figures = {}
    for dealer_id in {*rows, *(dealer_ids or [])}:  # a dealer with no lead yet has zeros
        row = rows.get(dealer_id)
        if on_postgresql:
            median, p90 = (row.median, row.p90) if row else (None, None)
        else:
            median, p90 = percentiles.get(dealer_id, (None, None))
        values = {name: getattr(row, name) if row else 0 for name in counted}
        values.update(median_answer_hours=_hours(median), p90_answer_hours=_hours(p90))
        figures[dealer_id] = {name: values[name] for name in FIGURES}
    return figures


def feed_figures(session: Session, dealer_id: int) -> dict:
    """The calling dealer's own figures, as its lead feed shows them."""
    return dealer_figures(session, [dealer_id])[dealer_id]
