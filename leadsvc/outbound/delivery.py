"""The senders of every outbox kind this package owns, registered in the outbox registry.

`prepare` reads the lead and the dealer as they are now (one query), says whether the message
may still go out (`Skip`: the person may have unsubscribed, the lead may have moved to another
dealer) and builds the email or the webhook request; `send_email` and `send_webhook` hand it on,
calling `handed_off()` just before the point of no return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead
from leadsvc.outbound.dealer_notice import (
    ERASURE_EVENT,
    MOVED_EVENT,
    REMINDER_EVENT,
    WEBHOOK_EVENT,
    WebhookPools,
    adf_email,
    erasure_email,
    erasure_webhook_body,
    follow_up_webhook_body,
    moved_email,
    post_webhook,
    reminder_email,
    webhook_body,
)
from leadsvc.outbound.mail import mail_transport
from leadsvc.outbound.messages import person_email
from leadsvc.outbound.subscription import may_send, notify_dealer
from leadsvc.outbound.tokens import VERP_LOCAL_PART, link_tokens
from leadsvc.outbox.kinds import (
    EMAIL_CHANNEL,
    WEBHOOK_CHANNEL,
    Connections,
    DeliveryError,
    HandedOff,
    Kind,
    Outgoing,
    RowRef,
    Skip,
    register,
)
from leadsvc.outbox.messages import (
    CONFIRM_EMAIL,
    DEALER_EMAIL,
    DEALER_ERASURE_EMAIL,
    DEALER_ERASURE_WEBHOOK,
    DEALER_KINDS,
    DEALER_MOVED_EMAIL,
    DEALER_MOVED_WEBHOOK,
    DEALER_REMINDER_EMAIL,
    DEALER_REMINDER_WEBHOOK,
    DEALER_WEBHOOK,
    ERASURE_KINDS,
    MOVED_KINDS,
    PERSON_KINDS,
    REMINDER_KINDS,
    WELCOME_EMAIL,
)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str
    body: bytes
    event: str = WEBHOOK_EVENT


def preload(session: Session, rows: list[RowRef]) -> list:
    """The leads of `rows` and their dealers (the rows' own, or the leads'), fresh from the
    database in two queries: `prepare` then finds them in the session."""
    leads = session.scalars(
        sa.select(Lead)
        .where(Lead.id.in_({row.lead_id for row in rows}))
        .execution_options(populate_existing=True)
    ).all()
    wanted = {row.dealer_id for row in rows} | {lead.dealer_id for lead in leads}
    wanted.discard(None)
    dealers = session.scalars(
        sa.select(Dealer).where(Dealer.id.in_(wanted)).execution_options(populate_existing=True)
    ).all()
    return [*leads, *dealers]


def skip_reason(
    kind: str, lead: Lead | None, dealer_id: int | None, hard_bounce_days: int = 365
) -> str | None:
    """Why the message must not go out now, or None if it may."""
    if lead is None:
        return "the lead no longer exists"
    if kind in ERASURE_KINDS or kind in MOVED_KINDS:
        return None  # a deletion or move notice goes out whatever the lead's state
    if kind in PERSON_KINDS and bounce_suppressed(kind, lead, hard_bounce_days):
        return "suppressed: mail to the address bounced"
    if not may_send(kind, lead.consent_status):
        if lead.consent_status == "withdrawn":
            return "suppressed: the person unsubscribed"
        return f"not sent to a lead whose consent is {lead.consent_status}"
    if kind == WELCOME_EMAIL and lead.newsletter is False:
        return "suppressed: the person turned the emails off"
    if kind in (*DEALER_KINDS, *REMINDER_KINDS) and lead.dealer_contact is False:
        return "the person asked not to be contacted by the dealer"
    if kind in (*DEALER_KINDS, *REMINDER_KINDS) and lead.dealer_id != dealer_id:
        return "the lead moved to another dealer"
    if kind in REMINDER_KINDS and lead.acknowledged_at is not None:
        return "the dealer acknowledged the lead"
    return None


def bounce_suppressed(kind: str, lead: Lead, hard_bounce_days: int) -> bool:
    """Whether mail of `kind` to the lead is held back by a bounce. Nothing goes to a bounced
    address; only the confirmation of a new signup does, once the last hard bounce is older
    than HARD_BOUNCE_DAYS (confirming lifts the suppression)."""
    if lead.bounced_at is None:
        return False
    if kind == CONFIRM_EMAIL:
        return lead.bounced_at > utcnow() - timedelta(days=hard_bounce_days)
    return True


Builder = Callable[..., object]


def _preparer(build: Builder, *, needs_dealer: bool):
    """`prepare` for a kind whose message `build(settings, row, lead, dealer)` makes."""

    def prepare(settings, session: Session, row: RowRef) -> Outgoing | Skip:
        lead = session.get(Lead, row.lead_id)  # preloaded
        dealer_id = row.dealer_id if row.dealer_id is not None else getattr(lead, "dealer_id", None)
        dealer = session.get(Dealer, dealer_id) if dealer_id is not None else None
        reason = skip_reason(row.kind, lead, row.dealer_id, settings.hard_bounce_days)
        if reason is not None:
            moved = (
                lead is not None and row.kind in DEALER_KINDS and lead.dealer_id != row.dealer_id
            )
            then = (lambda s: notify_dealer(s, lead.id, lead.dealer_id)) if moved else None
            return Skip(reason, then)
        if needs_dealer and dealer is None:
            raise DeliveryError("the dealer no longer exists", permanent=True)
        message = build(settings, row, lead, dealer)
        message_id = message.get("Message-ID") if hasattr(message, "get") else None
        return Outgoing(row.id, row.kind, message, str(message_id) if message_id else None)

    return prepare


def _person(settings, row: RowRef, lead: Lead, dealer: Dealer | None):
    dealer_name = dealer.name if dealer is not None and row.kind != CONFIRM_EMAIL else None
    return person_email(
        settings,
        kind=row.kind,
        outbox_id=row.id,
        lead_id=lead.id,
        to=lead.email,
        dealer_name=dealer_name,
        signup=lead.signup_count,
    )


def _adf(settings, row: RowRef, lead: Lead, dealer: Dealer):
    message = adf_email(settings, outbox_id=row.id, lead=lead, dealer=dealer)
    if message is None:
        raise DeliveryError("the lead may not be shared with the dealer", permanent=True)
    return message


def _erasure(settings, row: RowRef, lead: Lead, dealer: Dealer):
    return erasure_email(settings, outbox_id=row.id, lead=lead, dealer=dealer)


def _webhook_of(dealer: Dealer) -> tuple[str, str]:
    if not dealer.webhook_url or not dealer.webhook_secret:
        raise DeliveryError("the dealer has no webhook any more", permanent=True)
    return dealer.webhook_url, dealer.webhook_secret


def _lead_webhook(settings, row: RowRef, lead: Lead, dealer: Dealer) -> Webhook:
    url, secret = _webhook_of(dealer)
    return Webhook(url, secret, webhook_body(outbox_id=row.id, lead=lead, dealer=dealer))


def _erasure_webhook(settings, row: RowRef, lead: Lead, dealer: Dealer) -> Webhook:
    url, secret = _webhook_of(dealer)
    body = erasure_webhook_body(outbox_id=row.id, lead=lead, dealer=dealer)
    return Webhook(url, secret, body, ERASURE_EVENT)


def _target_hours(settings, dealer: Dealer) -> float:
    return dealer.response_hours or settings.lead_response_hours


def _reminder(settings, row: RowRef, lead: Lead, dealer: Dealer):
    target = _target_hours(settings, dealer)
    return reminder_email(settings, outbox_id=row.id, lead=lead, dealer=dealer, target_hours=target)


def _moved(settings, row: RowRef, lead: Lead, dealer: Dealer):
    return moved_email(settings, outbox_id=row.id, lead=lead, dealer=dealer)


def _reminder_webhook(settings, row: RowRef, lead: Lead, dealer: Dealer) -> Webhook:
    url, secret = _webhook_of(dealer)
    body = follow_up_webhook_body(
        event=REMINDER_EVENT,
        outbox_id=row.id,
        lead=lead,
        dealer=dealer,
        response_target_hours=_target_hours(settings, dealer),
    )
    return Webhook(url, secret, body, REMINDER_EVENT)


def _moved_webhook(settings, row: RowRef, lead: Lead, dealer: Dealer) -> Webhook:
    url, secret = _webhook_of(dealer)
    body = follow_up_webhook_body(
        event=MOVED_EVENT, outbox_id=row.id, lead=lead, dealer=dealer, reason="response_overdue"
    )
    return Webhook(url, secret, body, MOVED_EVENT)


def send_email(
    settings, outgoing: Outgoing, handed_off: HandedOff, connections: Connections
) -> None:
    """Hand the email to SMTP (or the mail folder), on the batch's SMTP session. Raises
    `DeliveryError` (not sent) or `UncertainDelivery` (it may have arrived)."""
    name = f"{outgoing.outbox_id}-{outgoing.kind.replace('_', '-')}"
    transport = connections.shared("mail", lambda: mail_transport(settings))
    transport.send(
        outgoing.message,
        name=name,
        handed_off=handed_off,
        sender=envelope_sender(settings, outgoing),
    )


def envelope_sender(settings, outgoing: Outgoing) -> str | None:
    """`bounces+<token>@BOUNCE_DOMAIN` when BOUNCE_DOMAIN is set (the token names the outbox
    row, signed), else None: MAIL FROM is the From address."""
    if not settings.bounce_domain:
        return None
    token = link_tokens(settings).verp_token(outgoing.outbox_id)
    return f"{VERP_LOCAL_PART}+{token}@{settings.bounce_domain}"


def send_webhook(
    settings, outgoing: Outgoing, handed_off: HandedOff, connections: Connections
) -> None:
    """POST the signed webhook, on the batch's connection to the dealer's server; the dealer
    deduplicates on its delivery id."""
    webhook = outgoing.message
    pools = connections.shared("webhooks", lambda: WebhookPools(settings.webhook_timeout))
    handed_off()
    post_webhook(
        webhook.url,
        webhook.secret,
        webhook.body,
        delivery=f"outbox-{outgoing.outbox_id}",
        timeout=settings.webhook_timeout,
        event=webhook.event,
        allowed_networks=settings.webhook_allowed_networks,
        pools=pools,
    )


def register_senders() -> None:
    """Register the person's emails and the dealer notices (idempotent)."""
    for name, build, needs_dealer in (
        (WELCOME_EMAIL, _person, False),
        (CONFIRM_EMAIL, _person, False),
        (DEALER_EMAIL, _adf, True),
        (DEALER_ERASURE_EMAIL, _erasure, True),
        (DEALER_REMINDER_EMAIL, _reminder, True),
        (DEALER_MOVED_EMAIL, _moved, True),
    ):
        prepare = _preparer(build, needs_dealer=needs_dealer)
        register(Kind(name, EMAIL_CHANNEL, prepare, send_email, preload=preload))
    for name, build in (
        (DEALER_WEBHOOK, _lead_webhook),
        (DEALER_ERASURE_WEBHOOK, _erasure_webhook),
        (DEALER_REMINDER_WEBHOOK, _reminder_webhook),
        (DEALER_MOVED_WEBHOOK, _moved_webhook),
    ):
        register(
            Kind(
                name,
                WEBHOOK_CHANNEL,
                _preparer(build, needs_dealer=True),
                send_webhook,
                idempotent=True,
                preload=preload,
            )
        )
