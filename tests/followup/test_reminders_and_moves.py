"""Reminders at half the target and moves at the target, with the clock moved by hand."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from leadsvc.dealers.directory import assign_territory_rows
from leadsvc.dealers.models import LeadMove
from leadsvc.followup.models import FollowUp
from leadsvc.outbound.tokens import link_tokens
from tests.followup.conftest import DUE, REMIND, START, lead_of, notices, run_at, sign_up
from tests.servers import wait_until

FOLLOW_UP_KINDS = {
    "dealer_reminder_email",
    "dealer_reminder_webhook",
    "dealer_moved_email",
    "dealer_moved_webhook",
}


def follow_up_notices(session, lead_id):
    return [notice for notice in notices(session, lead_id) if notice[0] in FOLLOW_UP_KINDS]


def feed_ids(client, headers) -> list[int]:
    """The ids in the dealer's feed of new leads."""
    return [row["id"] for row in client.get("/api/v1/dealer/leads", headers=headers).json["leads"]]


def moves(session, lead_id):
    session.rollback()
    return session.execute(
        sa.select(LeadMove.from_dealer_id, LeadMove.to_dealer_id, LeadMove.reason).where(
            LeadMove.lead_id == lead_id
        )
    ).all()


def test_the_reminder_goes_once_at_half_the_target_in_business_hours(
    app, client, session, dealers, clock
):
    lead_id = sign_up(client, session, "ann@example.com")
    run_at(app, clock, START)
    run_at(app, clock, REMIND - timedelta(minutes=1))
    assert follow_up_notices(session, lead_id) == []
    run_at(app, clock, REMIND)
    run_at(app, clock, REMIND + timedelta(hours=1))
    assert follow_up_notices(session, lead_id) == [("dealer_reminder_email", "NYA")]


def test_at_the_target_the_lead_moves_to_the_next_dealer_and_both_are_told(
    app, client, session, dealers, keys, clock
):
    lead_id = sign_up(client, session, "bob@example.com")
    run_at(app, clock, START)
    run_at(app, clock, REMIND)
    run_at(app, clock, DUE - timedelta(seconds=1))
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    run_at(app, clock, DUE)
    lead = lead_of(session, lead_id)
    assert (lead.dealer_id, lead.routing_reason) == (dealers["NYB"], "reassigned")
    assert moves(session, lead_id) == [(dealers["NYA"], dealers["NYB"], "response_overdue")]
    assert notices(session, lead_id)[-2:] == [
        ("dealer_moved_email", "NYA"),
        ("dealer_email", "NYB"),
    ]
    assert lead_id not in feed_ids(client, keys["NYA"])
    # The feed serves a lead once every transaction on the server older than its move has ended
    # (a busy machine's may run a while): a dealer polling sees it moments later.
    wait_until(lambda: lead_id in feed_ids(client, keys["NYB"]), 10, "the lead in NYB's feed")
    # The new dealer's clock starts at the move; it is reminded and moved on in its own turn.
    run_at(app, clock, DUE + timedelta(seconds=1))
    session.rollback()
    turn = session.scalars(
        sa.select(FollowUp).where(FollowUp.lead_id == lead_id, FollowUp.dealer_id == dealers["NYB"])
    ).one()
    assert (turn.via, turn.started_at) == ("reassignment", DUE)


def test_no_dealer_near_enough_sends_the_lead_to_the_unassigned_pool(
    app, client, session, dealers, make_app, clock
):
    lead_id = sign_up(client, session, "cy@example.com")
    near_only = make_app(reassign_max_km=1.0)
    from leadsvc.followup.clock import use_clock

    use_clock(near_only, clock)
    for moment in (START, DUE):
        run_at(near_only, clock, moment)
    lead = lead_of(session, lead_id)
    assert (lead.dealer_id, lead.routing_reason) == (None, "unassigned")
    assert moves(session, lead_id) == [(dealers["NYA"], None, "response_overdue")]


def test_a_lead_moves_at_most_reassign_max_times(app, client, session, dealers, make_app, clock):
    lead_id = sign_up(client, session, "dee@example.com")
    once = make_app(reassign_max_times=1)
    from leadsvc.followup.clock import use_clock

    use_clock(once, clock)
    run_at(once, clock, START)
    run_at(once, clock, DUE)
    run_at(once, clock, DUE + timedelta(seconds=1))  # NYB's turn starts
    run_at(once, clock, DUE + timedelta(days=7))
    assert lead_of(session, lead_id).dealer_id == dealers["NYB"]
    assert len(moves(session, lead_id)) == 1


def test_a_territory_lead_is_reminded_but_not_moved(app, client, session, dealers, clock):
    report = assign_territory_rows(session, [(1, {"zip": "10001", "dealer_code": "NYA"})])
    assert report.applied
    lead_id = sign_up(client, session, "eve@example.com")
    assert lead_of(session, lead_id).routing_reason == "territory"
    for moment in (START, REMIND, DUE, DUE + timedelta(days=3)):
        run_at(app, clock, moment)
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    assert moves(session, lead_id) == []
    assert follow_up_notices(session, lead_id) == [("dealer_reminder_email", "NYA")]


def test_a_territory_that_says_so_moves_its_overdue_leads(app, client, session, dealers, clock):
    row = {"zip": "10001", "dealer_code": "NYA", "reassign_overdue": "yes"}
    assert assign_territory_rows(session, [(1, row)]).applied
    lead_id = sign_up(client, session, "fay@example.com")
    for moment in (START, DUE):
        run_at(app, clock, moment)
    assert lead_of(session, lead_id).dealer_id == dealers["NYB"]


def test_a_person_who_withdrew_is_never_reminded_or_moved(
    app, client, session, dealers, clock, settings
):
    lead_id = sign_up(client, session, "gus@example.com")
    run_at(app, clock, START)
    token = link_tokens(settings).unsubscribe_token(lead_id)
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    for moment in (REMIND, DUE, DUE + timedelta(days=2)):
        run_at(app, clock, moment)
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    assert follow_up_notices(session, lead_id) == []
    assert moves(session, lead_id) == []


def test_a_person_who_turned_dealer_contact_off_is_never_reminded_or_moved(
    app, client, session, dealers, clock, settings
):
    lead_id = sign_up(client, session, "ida@example.com")
    run_at(app, clock, START)
    token = link_tokens(settings).preferences_token(lead_id, 1)
    assert client.post(f"/preferences/{token}", data={"newsletter": "on"}).status_code == 200
    for moment in (REMIND, DUE, DUE + timedelta(days=2)):
        run_at(app, clock, moment)
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    assert follow_up_notices(session, lead_id) == []
    assert moves(session, lead_id) == []
    session.rollback()
    turn = session.scalars(sa.select(FollowUp).where(FollowUp.lead_id == lead_id)).one()
    assert (turn.state, turn.end_reason) == ("closed", "no_dealer_contact")


def test_an_acknowledged_lead_is_answered_and_left_alone(
    app, client, session, dealers, keys, clock
):
    lead_id = sign_up(client, session, "hal@example.com")
    run_at(app, clock, START)
    reply = client.post(
        "/api/v1/dealer/leads/ack", headers=keys["NYA"], json={"lead_ids": [lead_id]}
    )
    assert reply.get_json()["acknowledged"] == [lead_id]
    for moment in (REMIND, DUE):
        run_at(app, clock, moment)
    assert follow_up_notices(session, lead_id) == []
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]


def test_route_max_km_sends_far_leads_to_the_unassigned_pool(make_app, session, monkeypatch):
    from leadsvc.dealers import routing
    from leadsvc.extensions import db
    from tests.followup.conftest import load_dealers

    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    app = make_app(route_max_km=200.0)
    with app.app_context(), db.sessionmaker(app)() as limited:
        load_dealers(limited)
        client = app.test_client()
        near = sign_up(client, limited, "near@example.com", "10001")
        far = sign_up(client, limited, "far@example.com", "33101")  # Miami
        assert lead_of(limited, near).routing_reason == "nearest"
        assert (lead_of(limited, far).dealer_id, lead_of(limited, far).routing_reason) == (
            None,
            "unassigned",
        )


def test_a_deactivated_dealer_s_clock_stops_and_its_leads_move_as_before(
    app, client, session, dealers, clock
):
    from leadsvc.dealers.directory import deactivate_dealer

    lead_id = sign_up(client, session, "ida@example.com")
    run_at(app, clock, START)
    clock.set(START + timedelta(hours=1))
    assert deactivate_dealer(session, "NYA").moved_leads == 1
    moved_at = START + timedelta(hours=1)
    run_at(app, clock, moved_at)
    session.rollback()
    old, new = session.scalars(
        sa.select(FollowUp).where(FollowUp.lead_id == lead_id).order_by(FollowUp.id)
    ).all()
    assert (old.dealer_id, old.state, old.reminded_at) == (dealers["NYA"], "closed", None)
    assert (new.dealer_id, new.via, new.started_at) == (dealers["NYB"], "routing", moved_at)
    # Past the first dealer's reminder and target: it hears nothing more about the lead.
    for moment in (REMIND, DUE):
        run_at(app, clock, moment)
    assert ("dealer_reminder_email", "NYA") not in follow_up_notices(session, lead_id)
    assert [(frm, reason) for frm, _, reason in moves(session, lead_id)] == [
        (dealers["NYA"], "dealer_deactivated")
    ]


def test_an_open_turn_stands_still_while_its_dealer_is_inactive(
    app, client, session, dealers, clock
):
    """A turn whose dealer is inactive (its lead not moved away) is paused, and on reactivation
    its reminder and target move on by the business time that passed while it stood still."""
    from leadsvc.dealers.models import Dealer

    lead_id = sign_up(client, session, "jon@example.com")
    run_at(app, clock, START)

    def set_active(active: bool) -> None:
        session.execute(sa.update(Dealer).where(Dealer.code == "NYA").values(active=active))
        session.commit()

    set_active(False)
    run_at(app, clock, START + timedelta(hours=2))  # paused two business hours in
    for moment in (REMIND, DUE + timedelta(hours=1)):  # both would have fired by now
        run_at(app, clock, moment)
    assert follow_up_notices(session, lead_id) == []
    assert lead_of(session, lead_id).dealer_id == dealers["NYA"]
    set_active(True)
    resumed_at = DUE + timedelta(hours=2)
    run_at(app, clock, resumed_at)
    session.rollback()
    turn = session.scalars(sa.select(FollowUp).where(FollowUp.lead_id == lead_id)).one()
    assert turn.paused_at is None and turn.state == "open"
    assert turn.remind_at > resumed_at and turn.due_at > turn.remind_at
    run_at(app, clock, turn.remind_at)
    assert follow_up_notices(session, lead_id) == [("dealer_reminder_email", "NYA")]
    run_at(app, clock, turn.due_at)
    assert lead_of(session, lead_id).dealer_id == dealers["NYB"]
