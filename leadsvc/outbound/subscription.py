"""What a signup, a confirmation and an unsubscribe change, and which outbox jobs each one needs.

Consent states of a lead: `given` (single opt-in), `pending` (waiting for the person to confirm
by the emailed link), `confirmed`, `withdrawn` (unsubscribed: suppressed). Only given and
confirmed leads get the welcome email and are passed to their dealer. A signup from a withdrawn
address does not resume anything by itself: anyone can type an address into a form, so the
person must confirm again (the lead becomes pending and gets a confirmation email).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.service import record_consent
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead
from leadsvc.outbox.messages import (
    CONFIRM_EMAIL,
    DEALER_EMAIL,
    DEALER_KINDS,
    DEALER_WEBHOOK,
    SKIPPED,
    WELCOME_EMAIL,
    QueuedRow,
    add_message,
    add_messages,
    skip_open_messages,
)
from leadsvc.outbox.models import OutboxMessage
from leadsvc.request_context import ConsentContext

GIVEN, PENDING, CONFIRMED, WITHDRAWN = "given", "pending", "confirmed", "withdrawn"
CONSENTED = (GIVEN, CONFIRMED)


def status_after_signup(previous: str | None, double_opt_in: bool) -> str:
    """The lead's consent state after a signup, given its state before (None: a new lead)."""
    if previous == WITHDRAWN:
        return PENDING
    if previous in CONSENTED:
        return previous
    return PENDING if double_opt_in else GIVEN


#: `dealer_webhook_url` not given: the dealer's webhook is looked up.
LOOK_UP = object()
_TOLD = object()


def new_lead_kinds(status: str, dealer_id: int | None, confirm_emails_per_day: int) -> list[str]:
    """The outbox rows a signup writes for a lead it inserted (a new lead has none yet), in the
    lead's consent `status` after the signup. `dealer_webhook` is written only if the dealer has
    a webhook URL: the caller checks, in the database."""
    if status == PENDING:
        return [CONFIRM_EMAIL] if confirm_emails_per_day > 0 else []
    if status not in CONSENTED:
        return []
    return [WELCOME_EMAIL] + ([DEALER_EMAIL, DEALER_WEBHOOK] if dealer_id is not None else [])


#: Why a repeat signup does not send what a new lead in its state would get.
NOT_AGAIN = {
    WELCOME_EMAIL: "not sent: the person was welcomed before",
    CONFIRM_EMAIL: "not sent: the day's confirmation emails for this address were sent",
    DEALER_EMAIL: "not sent: the dealer has this lead already",
    DEALER_WEBHOOK: "not sent: the dealer has this lead already",
}


def held_back_after_signup(
    messages: list[tuple[str, int, int | None]],
    lead_id: int,
    *,
    status: str,
    dealer_id: int | None,
    dealer_webhook_url: str | None,
    confirm_emails_per_day: int,
) -> list[tuple[str, int, int | None, str]]:
    """The rows a new lead in `status` would get and this signup does not send, each with why
    (kind, lead id, dealer id, reason); none for a new lead.

    A repeat signup writes them as `skipped`, so that a signup of a known address writes as many
    rows as one of a new address: the same work, the same time to answer, and nothing an outsider
    could time to learn whether an address is subscribed. They also record what was decided."""
    kinds = new_lead_kinds(status, dealer_id, confirm_emails_per_day)
    if not dealer_webhook_url and DEALER_WEBHOOK in kinds:
        kinds.remove(DEALER_WEBHOOK)
    sent = {kind for kind, _, _ in messages}
    dealer = {DEALER_EMAIL: dealer_id, DEALER_WEBHOOK: dealer_id}
    return [
        (kind, lead_id, dealer.get(kind), NOT_AGAIN[kind]) for kind in kinds if kind not in sent
    ]


def signup_counts(lead_id, dealer_id, since) -> tuple[sa.Label, sa.Label]:
    """(`dealer_told`, `confirmations_today`): the dealer notices the lead already has from its
    dealer and the confirmation emails written since `since`, as scalar subqueries on the lead's
    id and dealer columns, so the signup's upsert reads them in its own round trip (for a new
    lead and a known one alike: both then cost the same)."""
    outbox = OutboxMessage.__table__.c
    told = sa.select(sa.func.count()).where(
        outbox.lead_id == lead_id,
        outbox.dealer_id == dealer_id,
        # One bound value per kind: a plain list would be an "expanding" parameter, which
        # SQLAlchemy renders into the statement's text again on every signup.
        outbox.kind.in_([sa.literal(kind) for kind in DEALER_KINDS]),
        outbox.status != SKIPPED,
    )
    confirmations = sa.select(sa.func.count()).where(
        outbox.lead_id == lead_id, outbox.kind == CONFIRM_EMAIL, outbox.created_at >= since
    )
    return (
        told.scalar_subquery().label("dealer_told"),
        confirmations.scalar_subquery().label("confirmations_today"),
    )


def messages_after_signup(
    session: Session,
    lead_id: int,
    *,
    previous: str | None,
    status: str,
    dealer_id: int | None,
    confirm_emails_per_day: int,
    dealer_webhook_url: str | None | object = LOOK_UP,
    dealer_told: int | None = None,
    confirmations_today: int | None = None,
) -> list[tuple[str, int, int | None]]:
    """The outbox rows (kind, lead id, dealer id) a signup writes, decided in its transaction.

    A pending lead gets a confirmation email (a repeat signup resends it, at most
    `confirm_emails_per_day` in 24 hours); a lead that just became consented gets the welcome
    email; a consented lead is passed to its dealer once per dealer. `dealer_told` and
    `confirmations_today` (see `signup_counts`) and `dealer_webhook_url`, when the caller read
    them already, save their queries.
    """
    if previous is None:  # inserted by this signup
        kinds = new_lead_kinds(status, dealer_id, confirm_emails_per_day)
        if DEALER_WEBHOOK in kinds:
            if dealer_webhook_url is LOOK_UP:
                dealer_webhook_url = _told_and_webhook(session, lead_id, dealer_id, told=False)
            if not dealer_webhook_url:
                kinds.remove(DEALER_WEBHOOK)
        dealer = {DEALER_EMAIL: dealer_id, DEALER_WEBHOOK: dealer_id}
        return [(kind, lead_id, dealer.get(kind)) for kind in kinds]
    if status == PENDING:
        if confirmations_today is None:
            confirmations_today = confirmations_sent_today(session, lead_id)
        if confirmations_today < confirm_emails_per_day:
            return [(CONFIRM_EMAIL, lead_id, None)]
        return []
    messages: list[tuple[str, int, int | None]] = []
    if status in CONSENTED:
        if previous not in CONSENTED:
            messages.append((WELCOME_EMAIL, lead_id, None))
        if dealer_told is None or dealer_webhook_url is LOOK_UP:
            messages.extend(_dealer_messages(session, lead_id, dealer_id))
        elif dealer_id is not None and not dealer_told:
            messages.append((DEALER_EMAIL, lead_id, dealer_id))
            if dealer_webhook_url:
                messages.append((DEALER_WEBHOOK, lead_id, dealer_id))
    return messages


def confirmations_sent_today(session: Session, lead_id: int) -> int:
    since = utcnow() - timedelta(days=1)
    return (
        session.scalar(
            sa.select(sa.func.count()).where(
                OutboxMessage.lead_id == lead_id,
                OutboxMessage.kind == CONFIRM_EMAIL,
                OutboxMessage.created_at >= since,
            )
        )
        or 0
    )


def notify_dealer(session: Session, lead_id: int, dealer_id: int | None) -> list[QueuedRow]:
    """The ADF email (and webhook, if the dealer has one), unless this dealer was already told."""
    return add_messages(session, _dealer_messages(session, lead_id, dealer_id))


def _dealer_messages(
    session: Session, lead_id: int, dealer_id: int | None
) -> list[tuple[str, int, int | None]]:
    """The dealer notices `notify_dealer` writes: none if this dealer already has the lead."""
    if dealer_id is None:
        return []
    url = _told_and_webhook(session, lead_id, dealer_id, told=True)
    if url is _TOLD:
        return []
    messages = [(DEALER_EMAIL, lead_id, dealer_id)]
    if url:
        messages.append((DEALER_WEBHOOK, lead_id, dealer_id))
    return messages


def _told_and_webhook(session: Session, lead_id: int, dealer_id: int, told: bool):
    """The dealer's webhook URL, or `_TOLD` if `told` and the dealer already has this lead."""
    webhook_url = sa.select(Dealer.webhook_url).where(Dealer.id == dealer_id).scalar_subquery()
    if told:
        already = (
            sa.select(sa.func.count())
            .where(
                OutboxMessage.lead_id == lead_id,
                OutboxMessage.dealer_id == dealer_id,
                OutboxMessage.kind.in_(DEALER_KINDS),
                OutboxMessage.status != SKIPPED,
            )
            .scalar_subquery()
        )
        told_count, url = session.execute(sa.select(already, webhook_url)).one()
        return _TOLD if told_count else url
    return session.scalar(sa.select(webhook_url))


def _lead(session: Session, lead_id: int) -> Lead | None:
    return session.scalars(
        sa.select(Lead).where(Lead.id == lead_id).execution_options(populate_existing=True)
    ).one_or_none()


def confirm_lead(session: Session, lead_id: int, context: ConsentContext, signup: int = 1) -> str:
    """Confirm a pending lead (the POST of the confirm page) for the lead's `signup`-th signup,
    the one the link was sent for; commits.

    Returns "confirmed", or why nothing changed: "stale" (a newer signup has its own link),
    "already" (confirmed or given before), "withdrawn" (unsubscribed since: sign up again),
    "missing" (no such lead any more). Confirming also lifts a bounce suppression: the person
    has just read an email sent to the address.
    """
    now = utcnow()
    changed = session.execute(
        sa.update(Lead)
        .where(Lead.id == lead_id, Lead.consent_status == PENDING, Lead.signup_count == signup)
        .values(consent_status=CONFIRMED, confirmed_at=now, updated_at=now, bounced_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    lead = _lead(session, lead_id)
    if not changed:
        session.rollback()
        return confirm_link_state(lead, signup)
    record_consent(
        session,
        lead_id=lead.id,
        subject=lead.email,
        event_type=CONFIRMED,
        text_version=lead.consent_text_version,
        context=context,
    )
    add_message(session, WELCOME_EMAIL, lead.id)
    notify_dealer(session, lead.id, lead.dealer_id)
    session.commit()
    return "confirmed"


def confirm_link_state(lead: Lead | None, signup: int) -> str:
    """What a confirmation link for the lead's `signup`-th signup would do now: "confirm",
    or "missing", "stale", "withdrawn", "already" (see `confirm_lead`)."""
    if lead is None:
        return "missing"
    if lead.signup_count != signup:
        return "stale"
    if lead.consent_status == WITHDRAWN:
        return "withdrawn"
    return "confirm" if lead.consent_status == PENDING else "already"


def unsubscribe_lead(session: Session, lead_id: int, context: ConsentContext) -> str:
    """Withdraw the lead's consent and suppress the address (the unsubscribe POST); commits.

    Returns "unsubscribed", "already" or "missing". Messages not yet sent are skipped.
    """
    outcome = withdraw_lead(session, lead_id, context, "unsubscribed")
    session.commit()
    return outcome


def withdraw_lead(session: Session, lead_id: int, context: ConsentContext, why: str) -> str:
    """An unsubscribe, whatever asked for it (the link, one-click, the preferences page, a
    complaint): the lead becomes withdrawn, a `withdrawn` consent event records how (its
    `context`), and messages not yet sent are skipped with `why`. In the caller's transaction
    (the caller commits); returns "unsubscribed", "already" or "missing"."""
    now = utcnow()
    changed = session.execute(
        sa.update(Lead)
        .where(Lead.id == lead_id, Lead.consent_status != WITHDRAWN)
        .values(consent_status=WITHDRAWN, unsubscribed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    lead = _lead(session, lead_id)
    if not changed:
        return "missing" if lead is None else "already"
    record_consent(
        session,
        lead_id=lead.id,
        subject=lead.email,
        event_type=WITHDRAWN,
        text_version=lead.consent_text_version,
        context=context,
    )
    skip_open_messages(session, lead.id, why)
    return "unsubscribed"


def may_send(kind: str, consent_status: str) -> bool:
    """Whether a message of `kind` may go out for a lead in `consent_status` right now."""
    if kind == CONFIRM_EMAIL:
        return consent_status == PENDING
    return consent_status in CONSENTED
