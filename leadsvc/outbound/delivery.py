"""Building and sending one outbox message: what each kind of job actually does.

`skip_reason` says whether a message may still go out (the person may have unsubscribed, the
lead may have moved to another dealer); `build` reads the lead and dealer and makes the email or
webhook request; `transmit` sends it, calling `handed_off()` just before the point of no return.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy.orm import Session

from leadsvc.dealers.models import Dealer
from leadsvc.jobs.outbox import (
    CONFIRM_EMAIL,
    DEALER_EMAIL,
    DEALER_ERASURE_EMAIL,
    DEALER_ERASURE_WEBHOOK,
    DEALER_KINDS,
    DEALER_WEBHOOK,
    ERASURE_KINDS,
    PERSON_KINDS,
)
from leadsvc.outbound.dealer_notice import (
    ERASURE_EVENT,
    WEBHOOK_EVENT,
    adf_email,
    erasure_email,
    erasure_webhook_body,
    post_webhook,
    webhook_body,
)
from leadsvc.outbound.mail import DeliveryError, HandedOff, mail_transport
from leadsvc.outbound.messages import person_email
from leadsvc.outbound.subscription import may_send
from leadsvc.signups.models import Lead


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str
    body: bytes
    event: str = WEBHOOK_EVENT


@dataclass(frozen=True)
class Outgoing:
    """One message ready to send: an email, or a webhook request."""

    outbox_id: int
    kind: str
    email: EmailMessage | None = None
    webhook: Webhook | None = None

    @property
    def delivery_id(self) -> str:
        return f"outbox-{self.outbox_id}"


def skip_reason(kind: str, lead: Lead | None, dealer_id: int | None) -> str | None:
    """Why the message must not go out now, or None if it may."""
    if lead is None:
        return "the lead no longer exists"
    if kind in ERASURE_KINDS:
        return None  # a deletion notice goes out whatever the lead's state
    if not may_send(kind, lead.consent_status):
        if lead.consent_status == "withdrawn":
            return "suppressed: the person unsubscribed"
        return f"not sent to a lead whose consent is {lead.consent_status}"
    if kind in DEALER_KINDS and lead.dealer_id != dealer_id:
        return "the lead moved to another dealer"
    return None


def build(settings, session: Session, outbox_id: int, kind: str, lead_id: int,
          dealer_id: int | None) -> Outgoing:  # fmt: skip
    """The email or webhook for one outbox row, from the lead and dealer as they are now."""
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise DeliveryError("the lead no longer exists", permanent=True)
    dealer = session.get(Dealer, dealer_id) if dealer_id is not None else None
    if kind in PERSON_KINDS:
        if kind == CONFIRM_EMAIL or lead.dealer_id is None:
            dealer_name = None
        else:
            dealer_name = session.get(Dealer, lead.dealer_id).name
        message = person_email(settings, kind=kind, outbox_id=outbox_id, lead_id=lead.id,
                               to=lead.email, dealer_name=dealer_name)  # fmt: skip
        return Outgoing(outbox_id, kind, email=message)
    if dealer is None:
        raise DeliveryError("the dealer no longer exists", permanent=True)
    if kind == DEALER_EMAIL:
        message = adf_email(settings, outbox_id=outbox_id, lead=lead, dealer=dealer)
        if message is None:
            raise DeliveryError("the lead may not be shared with the dealer", permanent=True)
        return Outgoing(outbox_id, kind, email=message)
    if kind == DEALER_WEBHOOK:
        if not dealer.webhook_url or not dealer.webhook_secret:
            raise DeliveryError("the dealer has no webhook any more", permanent=True)
        body = webhook_body(outbox_id=outbox_id, lead=lead, dealer=dealer)
        webhook = Webhook(dealer.webhook_url, dealer.webhook_secret, body)
        return Outgoing(outbox_id, kind, webhook=webhook)
    if kind == DEALER_ERASURE_EMAIL:
        notice = erasure_email(settings, outbox_id=outbox_id, lead=lead, dealer=dealer)
        return Outgoing(outbox_id, kind, email=notice)
    if kind == DEALER_ERASURE_WEBHOOK:
        if not dealer.webhook_url or not dealer.webhook_secret:
            raise DeliveryError("the dealer has no webhook any more", permanent=True)
        body = erasure_webhook_body(outbox_id=outbox_id, lead=lead, dealer=dealer)
        webhook = Webhook(dealer.webhook_url, dealer.webhook_secret, body, ERASURE_EVENT)
        return Outgoing(outbox_id, kind, webhook=webhook)
    raise ValueError(f"unknown outbox kind {kind!r}")


def transmit(settings, outgoing: Outgoing, handed_off: HandedOff) -> None:
    """Send it. Raises `DeliveryError` (not sent) or `UncertainDelivery` (may have arrived)."""
    if outgoing.email is not None:
        name = f"{outgoing.outbox_id}-{outgoing.kind.replace('_', '-')}"
        mail_transport(settings).send(outgoing.email, name=name, handed_off=handed_off)
        return
    webhook = outgoing.webhook
    handed_off()
    post_webhook(webhook.url, webhook.secret, webhook.body, delivery=outgoing.delivery_id,
                 timeout=settings.webhook_timeout, event=webhook.event)  # fmt: skip
