"""The feed under concurrent writes: no lead skipped or served twice across pages.

On PostgreSQL a lead's feed position is its routing transaction's id, and only positions below
every running transaction are served; these tests hold transactions open to prove a late commit
lands after every cursor already handed out. The threaded test runs on both databases.
"""

import threading
import time

import pytest
import sqlalchemy as sa

from leadsvc.commit_order import next_delivery_seq
from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from tests.dealers.conftest import ACK, LA_ZIP, feed, page_through, sign_up
from tests.factories import valid_signup

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _lead_values(email: str, dealer_id: int) -> dict:
    now = utcnow()
    return {
        "email": email,
        "email_key": email,
        "email_as_typed": email,
        "first_name": "Late",
        "last_name": "Commit",
        "zip5": "10001",
        "consent_status": "given",
        "consent_text_version": 1,
        "signup_count": 1,
        "dealer_id": dealer_id,
        "routing_reason": "nearest",
        "created_at": now,
        "updated_at": now,
    }


def _wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def _page_on(client, headers, cursor, count: int, **params):
    """Pages from `cursor` until `count` leads came (the horizon is cluster-wide: another
    database's open transaction may hold a commit back for a moment); then one empty page."""
    pages: list[list[int]] = []

    def more() -> bool:
        nonlocal cursor
        got, cursor = page_through(client, headers, limit=2, cursor=cursor, **params)
        pages.extend(page for page in got if page)
        return sum(map(len, pages)) >= count

    _wait_for(more, f"{count} leads")
    assert feed(client, headers, cursor=cursor, **params)[1] == []
    return pages, cursor


@postgres_only
def test_a_lead_committed_late_lands_after_every_cursor_handed_out(
    app, client, session, keys, dealer_ids
):
    early = [sign_up(client, session, f"early{n}@example.com") for n in range(3)]
    with db.engine(app).connect() as held:
        transaction = held.begin()
        # Routed now, committed last: its position is this transaction's id, below the others'.
        late = held.execute(
            sa.insert(Lead)
            .values(
                **_lead_values("late@example.com", dealer_ids["NY1"]),
                delivery_seq=next_delivery_seq("postgresql"),
            )
            .returning(Lead.id)
        ).scalar_one()
        after = [sign_up(client, session, f"after{n}@example.com", settled=False) for n in range(4)]
        assert client.post(ACK, headers=keys["NY1"], json={"lead_ids": [late]}).get_json() == {
            "acknowledged": [],
            "not_found": [late],
        }  # invisible until committed

        # Page to the end while it is open: the later commits wait behind it.
        pages, cursor = _page_on(client, keys["NY1"], None, 3, status="all")
        assert pages == [early[:2], early[2:]]
        time.sleep(0.2)
        assert feed(client, keys["NY1"], status="all", cursor=cursor)[1] == []
        transaction.commit()

    pages_after, cursor = _page_on(client, keys["NY1"], cursor, 5, status="all")
    served = [lead for page in pages + pages_after for lead in page]
    assert served == early + [late] + after  # each once, in routing-transaction order
    # From the start, the feed now reads the same as the pages did.
    assert feed(client, keys["NY1"], status="all")[1] == served


def _blocked_by(holder) -> bool:
    """Whether another session waits for a lock `holder` holds."""
    pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with holder.engine.connect() as probe:  # pg_stat_activity is a per-transaction snapshot
        return (
            probe.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            ).scalar_one()
            > 0
        )


@postgres_only
def test_an_ack_racing_a_move_does_not_acknowledge_the_other_dealers_lead(
    app, client, session, keys, dealer_ids
):
    lead = sign_up(client, session, "moving@example.com")
    reply = {}
    with db.engine(app).connect() as mover:
        transaction = mover.begin()
        # A deactivation re-routing the lead to LA1, not yet committed (it holds the row).
        mover.execute(
            sa.update(Lead)
            .where(Lead.id == lead)
            .values(dealer_id=dealer_ids["LA1"], delivery_seq=next_delivery_seq("postgresql"))
        )
        acker = threading.Thread(
            target=lambda: reply.update(
                client.post(ACK, headers=keys["NY1"], json={"lead_ids": [lead]}).get_json()
            )
        )
        acker.start()
        _wait_for(lambda: _blocked_by(mover), "the acknowledgement to wait for the lead's row")
        transaction.commit()
        acker.join(timeout=10)
    assert reply == {"acknowledged": [], "not_found": [lead]}
    session.expire_all()
    moved = session.get(Lead, lead)
    assert (moved.dealer_id, moved.acknowledged_at) == (dealer_ids["LA1"], None)
    assert feed(client, keys["LA1"])[1] == [lead]  # still new for the dealer it moved to


def test_a_reader_paging_while_writers_sign_up_gets_every_lead_once(app, session, keys, dealer_ids):
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        writer = app.test_client()
        try:
            for i in range(8):
                zip5 = LA_ZIP if i % 4 == 3 else "10001"
                reply = writer.post(
                    "/api/v1/signups", json=valid_signup(email=f"w{n}-{i}@example.com", zip=zip5)
                )
                assert reply.status_code == 202, reply.get_json()
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            errors.append(error)

    served: list[int] = []
    expected: list[int] = []  # filled in once the writers are done

    def read() -> None:
        """Pages on from its cursor until it has as many leads as NY1 has, then once more."""
        reader = app.test_client()
        cursor, deadline = None, time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                query = {"limit": 3, "status": "all", **({"cursor": cursor} if cursor else {})}
                body = reader.get(
                    "/api/v1/dealer/leads", headers=keys["NY1"], query_string=query
                ).get_json()
                served.extend(lead["id"] for lead in body["leads"])
                cursor = body["next_cursor"] or cursor
                if not body["leads"]:
                    if writers_done.is_set() and len(served) >= len(expected):
                        return  # quiet
                    time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    session.expire_all()
    expected.extend(
        session.scalars(
            sa.select(Lead.id)
            .where(Lead.dealer_id == dealer_ids["NY1"])
            .order_by(Lead.delivery_seq, Lead.id)
        )
    )
    writers_done.set()
    reader.join(timeout=60)
    assert not errors, errors
    assert len(expected) == 24
    assert len(served) == len(set(served)), "a lead was served twice"
    assert served == expected  # every NY1 lead, in feed order, and nothing else
