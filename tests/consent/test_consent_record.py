"""The consent record: the published notice, and events that can be appended but never changed.

On both databases: the append-only rule is enforced by the database itself (triggers), so it
holds for any client, not only this service's code.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from leadsvc.consent.models import ConsentEvent, ConsentText
from leadsvc.consent.service import (
    ConsentContext,
    active_text,
    record_consent,
    text_version_exists,
)
from leadsvc.leads.models import Lead
from tests.factories import valid_signup

NOTICE_V1 = (
    "After we receive your information it may be used by MINI USA and your MINI Dealer "
    "to contact you."
)
CONTEXT = ConsentContext(
    ip="203.0.113.7",
    user_agent="Mozilla/5.0 (consent test)",
    source_url="https://www.miniusa.com/",
    request_id="req-consent-0001",
)


def _record(session, subject="jane.doe@example.com", lead_id=41) -> int:
    event_id = record_consent(
        session,
        lead_id=lead_id,
        subject=subject,
        event_type="given",
        text_version=1,
        context=CONTEXT,
    )
    session.commit()
    return event_id


def _row(session, event_id: int):
    session.rollback()
    return session.execute(
        sa.select(ConsentEvent.subject, ConsentEvent.event_type, ConsentEvent.lead_id).where(
            ConsentEvent.id == event_id
        )
    ).one_or_none()


def _event_count(session) -> int:
    session.rollback()
    return session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))


# --- The notice -------------------------------------------------------------------------------


def test_consent_text_version_1_is_the_forms_notice_with_its_sha256(session):
    text = session.get(ConsentText, 1)
    assert text.text == NOTICE_V1
    assert text.sha256 == hashlib.sha256(NOTICE_V1.encode("utf-8")).hexdigest()
    assert text.active is True
    assert text.published_at.tzinfo is not None


def test_version_1_is_the_only_and_active_text(session):
    assert active_text(session).version == 1
    assert session.scalars(sa.select(ConsentText.version)).all() == [1]
    assert text_version_exists(session, 1) is True
    assert text_version_exists(session, 2) is False


def test_two_texts_cannot_both_be_active(session):
    session.add(ConsentText(version=2, text="Another notice.", sha256="0" * 64, active=True))
    with pytest.raises(DBAPIError):
        session.commit()
    session.rollback()
    assert session.scalars(sa.select(ConsentText.version)).all() == [1]


# --- Appending events -------------------------------------------------------------------------


def test_recorded_event_keeps_who_what_when_and_how(session):
    before = datetime.now(UTC)
    event_id = _record(session)
    session.expunge_all()
    event = session.get(ConsentEvent, event_id)
    assert (
        event.lead_id,
        event.subject,
        event.event_type,
        event.text_version,
        event.ip,
        event.user_agent,
        event.source_url,
        event.request_id,
    ) == (
        41,
        "jane.doe@example.com",
        "given",
        1,
        "203.0.113.7",
        "Mozilla/5.0 (consent test)",
        "https://www.miniusa.com/",
        "req-consent-0001",
    )
    assert event.occurred_at.tzinfo is not None
    assert before - timedelta(seconds=5) <= event.occurred_at <= datetime.now(UTC)


def test_events_are_appended_one_per_consent(session):
    first = _record(session)
    second = _record(session)
    assert second > first
    assert _event_count(session) == 2


def test_event_must_name_a_published_text_version(session):
    with pytest.raises(DBAPIError):
        record_consent(
            session,
            lead_id=1,
            subject="jane@example.com",
            event_type="given",
            text_version=99,
            context=CONTEXT,
        )
        session.commit()
    session.rollback()
    assert _event_count(session) == 0


# --- Append-only, enforced by the database ------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_events SET subject = 'someone@example.com' WHERE id = :id",
        "UPDATE consent_events SET event_type = 'withdrawn' WHERE id = :id",
        "UPDATE consent_events SET lead_id = NULL",
        "DELETE FROM consent_events WHERE id = :id",
        "DELETE FROM consent_events",
    ],
    ids=["update-subject", "update-event-type", "update-all", "delete-one", "delete-all"],
)
def test_sql_update_or_delete_of_a_consent_event_is_refused_and_the_row_stays(session, statement):
    event_id = _record(session)
    with pytest.raises(DBAPIError) as raised:
        session.execute(sa.text(statement), {"id": event_id})
        session.commit()
    session.rollback()
    assert "append-only" in str(raised.value)
    assert _row(session, event_id) == ("jane.doe@example.com", "given", 41)
    assert _event_count(session) == 1


def test_changing_an_event_through_the_orm_is_refused(session):
    event_id = _record(session)
    event = session.get(ConsentEvent, event_id)
    event.event_type = "withdrawn"
    with pytest.raises(DBAPIError):
        session.commit()
    session.rollback()
    assert _row(session, event_id) == ("jane.doe@example.com", "given", 41)


def test_deleting_an_event_through_the_orm_is_refused(session):
    event_id = _record(session)
    session.delete(session.get(ConsentEvent, event_id))
    with pytest.raises(DBAPIError):
        session.commit()
    session.rollback()
    assert _row(session, event_id) == ("jane.doe@example.com", "given", 41)


def test_consent_events_outlive_their_lead(client, session):
    # Leads may be purged; the proof of consent stays, still naming the lead id it had.
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    session.rollback()
    lead_id = session.scalar(sa.select(Lead.id))
    session.execute(sa.delete(Lead))
    session.commit()
    session.rollback()
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.lead_id, event.subject) == (lead_id, "jane.doe@example.com")
    assert session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
