"""What a bounce webhook does with a genuine call: each notification in it is taken once.

`BounceWebhooks` (one per app) knows which providers are configured and checks their calls
(`leadsvc.deliverability.providers`). `take` then records each notification's bounces and
complaints through the same service `leadsvc bounces ingest` uses, and notes the notification
by the provider's id for it: the same notification again (a provider's retry) is answered and
changes nothing; the same id with other content is refused as a replay, before anything of the
call is acted on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.deliverability.models import WebhookDelivery
from leadsvc.deliverability.providers import (
    Call,
    Delivery,
    Reading,
    Refused,
    postmark,
    sendgrid,
    ses,
)
from leadsvc.deliverability.record import DUPLICATE, record_notice
from leadsvc.settings import SettingsError

log = logging.getLogger(__name__)
IGNORED = "ignored"


class NotConfigured(LookupError):
    """The provider is unknown, or its settings are unset: its endpoint is off."""


class BounceWebhooks:
    """The configured providers of one app, and what their checks need (SNS certificates
    fetched and kept, SendGrid's key)."""

    def __init__(self, settings):
        self.settings = settings
        self.certificates = ses.SnsCertificates(
            settings.sns_trusted_origin, settings.webhook_timeout
        )
        key = settings.sendgrid_webhook_public_key
        try:
            self.sendgrid_key = sendgrid.public_key(key) if key else None
        except ValueError as error:
            raise SettingsError(str(error)) from None

    def configured(self, provider: str) -> bool:
        settings = self.settings
        return {
            "ses": bool(settings.ses_topic_arns),
            "sendgrid": self.sendgrid_key is not None,
            "postmark": bool(settings.postmark_webhook_user),
        }.get(provider, False)

    def read(self, provider: str, call: Call) -> Reading:
        """Check and read a call; NotConfigured, `Refused` or `Unreadable` if it is not one."""
        if not self.configured(provider):
            raise NotConfigured(provider)
        if provider == "ses":
            return ses.read_call(self.settings, call, self.certificates)
        if provider == "sendgrid":
            return sendgrid.read_call(self.settings, call, self.sendgrid_key)
        return postmark.read_call(self.settings, call)

    def confirm(self, reading: Reading) -> None:
        """Confirm an SNS subscription (OSError if SNS cannot be reached)."""
        if reading.subscribe_url:
            ses.confirm_subscription(reading.subscribe_url, self.certificates)
            log.info("bounce webhook ses: subscription confirmed")


def take(session: Session, settings, provider: str, deliveries: Sequence[Delivery]) -> Counter:
    """Act on each notification not taken before; the notices' outcomes counted (recorded,
    duplicate, unmatched, and `ignored` for events that are no bounce or complaint).
    `Refused` (403) if a notification's id was taken before with other content."""
    counts: Counter = Counter()
    seen = _seen(session, provider, [d.delivery_id for d in deliveries])
    for delivery in deliveries:
        if delivery.delivery_id in seen and seen[delivery.delivery_id] != delivery.digest:
            raise Refused(403, "A notification with this id was received before, differently.")
    for delivery in deliveries:
        if delivery.delivery_id in seen:
            counts[DUPLICATE] += max(1, len(delivery.notices))
            continue
        if not delivery.notices:  # an open, a delivery...: nothing to do, nothing to note
            counts[IGNORED] += 1
            continue
        for notice in delivery.notices:
            counts[record_notice(session, settings, notice, provider, by_recipient=True)] += 1
        _note(session, provider, delivery)
        seen[delivery.delivery_id] = delivery.digest
    log.info("bounce webhook %s: %s", provider, summary(counts))
    return counts


def summary(counts: Counter) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "nothing"


def _seen(session: Session, provider: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.execute(
        sa.select(WebhookDelivery.delivery_id, WebhookDelivery.digest).where(
            WebhookDelivery.provider == provider, WebhookDelivery.delivery_id.in_(ids)
        )
    )
    return {delivery_id: digest for delivery_id, digest in rows}


def _note(session: Session, provider: str, delivery: Delivery) -> None:
    """Note the notification as taken (committed); taken by another process just now is fine:
    its notices were recorded once either way."""
    session.add(
        WebhookDelivery(
            provider=provider,
            delivery_id=delivery.delivery_id,
            digest=delivery.digest,
            received_at=utcnow(),
        )
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
