"""The person's own preferences: what they get (emails from the brand, contact by their dealer,
the interests they chose), changed from the page their emails link to, or everything stopped.

Each change is a consent event of the lead, its method (`source_url`) `preferences:` and the
words the page showed for the choice, so the record says what the person saw when they chose.
Turning both choices off, or "Unsubscribe from everything", is an unsubscribe with every effect
an unsubscribe has (`withdraw_lead`). A preferences link serves the signup it was sent for:
after a new signup or a withdrawal it changes nothing (see `preferences_state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.service import record_consent
from leadsvc.consent.subjects import ERASED
from leadsvc.db import utcnow
from leadsvc.leads.models import Lead
from leadsvc.outbound.subscription import CONSENTED, WITHDRAWN, notify_dealer, withdraw_lead
from leadsvc.outbox.messages import DEALER_KINDS, REMINDER_KINDS, WELCOME_EMAIL, skip_open_messages
from leadsvc.request_context import ConsentContext

NEWSLETTER, DEALER_CONTACT = "newsletter", "dealer_contact"
#: The words the page shows for each choice; a change's consent event records them.
CHOICES = {
    NEWSLETTER: "Emails from MINI USA: updates, news, special offers and more",
    DEALER_CONTACT: "My MINI dealer may contact me",
}
INTERESTS_LABEL = "The models I am interested in"
UNSUBSCRIBE_LABEL = "Unsubscribe from everything"
#: Consent event types of the changes (at most 16 characters, the column's width).
EVENT_TYPES = {
    (NEWSLETTER, True): "newsletter_on",
    (NEWSLETTER, False): "newsletter_off",
    (DEALER_CONTACT, True): "dealer_on",
    (DEALER_CONTACT, False): "dealer_off",
}
INTERESTS_EVENT = "interests"
SAVED, UNCHANGED, UNSUBSCRIBED = "saved", "unchanged", "unsubscribed"
OPEN, STALE, MISSING = "open", "stale", "missing"


@dataclass(frozen=True)
class Preferences:
    """What the page shows: the consent state, the two choices, the interests, a bounce."""

    status: str
    newsletter: bool
    dealer_contact: bool
    interests: tuple[str, ...]
    bounced: bool


@dataclass(frozen=True)
class Choice:
    """What the person sent: the two choices, and the interests they kept ticked."""

    newsletter: bool
    dealer_contact: bool
    interests: tuple[str, ...]


def preferences_state(lead: Lead | None, signup: int) -> str:
    """What a preferences link for the lead's `signup`-th signup may do now: "open", or
    "missing" (no such lead, or the person was erased), "stale" (a newer signup has its own
    link), "withdrawn" (the person unsubscribed since: only a new signup, confirmed, brings the
    emails back)."""
    if lead is None or lead.consent_status == ERASED:
        return MISSING
    if lead.signup_count != signup:
        return STALE
    if lead.consent_status == WITHDRAWN:
        return WITHDRAWN
    return OPEN


def _locked_lead(session: Session, lead_id: int) -> Lead | None:
    query = sa.select(Lead).where(Lead.id == lead_id).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def read_preferences(session: Session, lead_id: int, signup: int) -> tuple[str, Preferences | None]:
    """The link's state and, when it is "open", what the page shows. Changes nothing."""
    lead = session.scalars(
        sa.select(Lead).where(Lead.id == lead_id).execution_options(populate_existing=True)
    ).one_or_none()
    state = preferences_state(lead, signup)
    if state != OPEN:
        return state, None
    return state, Preferences(
        status=lead.consent_status,
        newsletter=lead.newsletter,
        dealer_contact=lead.dealer_contact,
        interests=tuple(lead.interests or ()),
        bounced=lead.bounced_at is not None,
    )


def _context(context: ConsentContext, label: str) -> ConsentContext:
    return ConsentContext(
        context.ip, context.user_agent, f"preferences:{label}", context.request_id
    )


def unsubscribe_everything(
    session: Session, lead_id: int, signup: int, context: ConsentContext
) -> str:
    """The page's "Unsubscribe from everything": an unsubscribe (commits). Returns
    "unsubscribed", or the link's state when it may no longer change anything."""
    lead = _locked_lead(session, lead_id)
    state = preferences_state(lead, signup)
    if state != OPEN:
        session.rollback()
        return state
    withdraw_lead(session, lead_id, _context(context, UNSUBSCRIBE_LABEL), "unsubscribed")
    session.commit()
    return UNSUBSCRIBED


def change_preferences(
    session: Session, lead_id: int, signup: int, choice: Choice, context: ConsentContext
) -> str:
    """Apply what the person chose (commits): "saved", "unchanged", "unsubscribed" (both
    choices off), or the link's state when it may no longer change anything."""
    if not choice.newsletter and not choice.dealer_contact:
        return unsubscribe_everything(session, lead_id, signup, context)
    lead = _locked_lead(session, lead_id)
    state = preferences_state(lead, signup)
    if state != OPEN:
        session.rollback()
        return state
    interests = [item for item in lead.interests or () if item in choice.interests]
    wanted = {NEWSLETTER: choice.newsletter, DEALER_CONTACT: choice.dealer_contact}
    changed = {name: value for name, value in wanted.items() if getattr(lead, name) != value}
    interests_changed = interests != list(lead.interests or ())
    if not changed and not interests_changed:
        session.rollback()
        return UNCHANGED
    for name, value in changed.items():
        _record(session, lead, EVENT_TYPES[name, value], _context(context, CHOICES[name]))
    if interests_changed:
        shown = f"{INTERESTS_LABEL}: {', '.join(interests) or 'none'}"
        _record(session, lead, INTERESTS_EVENT, _context(context, shown))
    values = {**changed, "updated_at": utcnow()}
    if interests_changed:
        values["interests"] = interests or None
    session.execute(
        sa.update(Lead)
        .where(Lead.id == lead.id)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    _apply(session, lead, changed)
    session.commit()
    return SAVED


def _record(session: Session, lead: Lead, event_type: str, context: ConsentContext) -> None:
    record_consent(
        session,
        lead_id=lead.id,
        subject=lead.email,
        event_type=event_type,
        text_version=lead.consent_text_version,
        context=context,
    )


def _apply(session: Session, lead: Lead, changed: dict[str, bool]) -> None:
    """The effects: mail not yet sent that the person no longer wants is skipped; a dealer
    allowed again is told of the lead if it never was."""
    if changed.get(NEWSLETTER) is False:
        skip_open_messages(session, lead.id, "the person turned the emails off", [WELCOME_EMAIL])
    if changed.get(DEALER_CONTACT) is False:
        why = "the person asked not to be contacted by the dealer"
        skip_open_messages(session, lead.id, why, [*DEALER_KINDS, *REMINDER_KINDS])
    if changed.get(DEALER_CONTACT) is True and lead.consent_status in CONSENTED:
        notify_dealer(session, lead.id, lead.dealer_id)
