"""At the deadline a lead moves exactly once: passes running together, or one that dies inside
its transaction and is run again, and a relay's own full pass."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from leadsvc.dealers.models import LeadMove
from leadsvc.followup import actions
from leadsvc.followup.service import follow_up_for_app
from tests.followup.conftest import DUE, REMIND, START, lead_of, notices, run_at, sign_up


def overdue_moves(session, lead_id) -> int:
    session.rollback()
    return session.scalar(
        sa.select(sa.func.count()).where(
            LeadMove.lead_id == lead_id, LeadMove.reason == "response_overdue"
        )
    )


def test_a_pass_that_dies_inside_its_move_leaves_nothing_and_the_next_moves_once(
    app, client, session, dealers, clock, monkeypatch
):
    lead_id = sign_up(client, session, "ida@example.com")
    run_at(app, clock, START)

    def dies(*args, **kwargs):
        raise SystemExit("killed at the deadline")

    monkeypatch.setattr(actions, "notify_dealer", dies)
    with pytest.raises(SystemExit):
        run_at(app, clock, DUE)
    assert overdue_moves(session, lead_id) == 0
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    monkeypatch.undo()
    run_at(app, clock, DUE)
    run_at(app, clock, DUE)
    assert overdue_moves(session, lead_id) == 1
    assert lead_of(session, lead_id).dealer_id == dealers["NYB"]
    assert notices(session, lead_id).count(("dealer_moved_email", "NYA")) == 1


def one_pass(app, start: threading.Barrier, errors: list[BaseException]) -> None:
    start.wait()
    try:
        follow_up_for_app(app)
    except BaseException as error:  # reported by the test
        errors.append(error)


def test_passes_running_at_once_remind_once_and_move_once(app, client, session, dealers, clock):
    lead_ids = [sign_up(client, session, f"p{n}@example.com") for n in range(3)]
    run_at(app, clock, START)
    for moment in (REMIND, DUE):
        clock.set(moment)
        start = threading.Barrier(4)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=one_pass, args=(app, start, errors)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
    for lead_id in lead_ids:
        sent = notices(session, lead_id)
        assert sent.count(("dealer_reminder_email", "NYA")) == 1
        assert sent.count(("dealer_moved_email", "NYA")) == 1
        assert sent.count(("dealer_email", "NYB")) == 1
        assert overdue_moves(session, lead_id) == 1
