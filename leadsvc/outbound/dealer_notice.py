"""Telling a dealer about a lead: ADF 1.0 XML by email, and a signed JSON webhook.

The ADF document is the one the dealer lead API serves (`leadsvc.dealers.adf`), so a dealer's CRM
sees the same XML however it receives a lead. It is the plain-text body of an email to the
dealer's lead inbox and starts `<?xml version="1.0"?>` then `<?adf version="1.0"?>`.

Webhook: `POST <webhook_url>` with a JSON body and these headers:

    Content-Type: application/json
    X-Leadsvc-Event: lead.created
    X-Leadsvc-Delivery: outbox-<id>    (the same on every try: deduplicate on it)
    X-Leadsvc-Timestamp: <unix seconds>
    X-Leadsvc-Signature: sha256=<hex HMAC-SHA256(webhook_secret, "<timestamp>.<raw body>")>

Any answer but 2xx, and any timeout, fails the try (retried); redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from leadsvc.dealers.adf import adf_document
from leadsvc.dealers.leads import lead_record
from leadsvc.ops.logs import redact
from leadsvc.outbound.mail import new_message
from leadsvc.outbound.messages import message_id
from leadsvc.outbox.kinds import DeliveryError

WEBHOOK_EVENT = "lead.created"
ERASURE_EVENT = "lead.erased"
USER_AGENT = "leadsvc-webhook/1"


def adf_email(settings, *, outbox_id: int, lead, dealer) -> EmailMessage | None:
    """The ADF email for `lead` to `dealer`'s lead inbox; None if the lead may not be shared."""
    document = adf_document([lead_record(lead)], dealer, provider_url=settings.public_base_url)
    if document is None:
        return None
    message = new_message()
    message["From"] = settings.mail_from
    message["To"] = Address(display_name=dealer.name, addr_spec=dealer.lead_email)
    message["Subject"] = f"New lead {lead.id} from MINI USA Stay In the Loop"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(settings, outbox_id, "dealer_email")
    message.set_content(document, subtype="plain", charset="utf-8")
    return message


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def webhook_body(*, outbox_id: int, lead, dealer) -> bytes:
    """The JSON the dealer's webhook receives: the lead as the dealer API shows it."""
    record = {key: _json_value(value) for key, value in lead_record(lead).items()}
    document = {
        "event": WEBHOOK_EVENT,
        "delivery": f"outbox-{outbox_id}",
        "dealer": {"code": dealer.code, "name": dealer.name},
        "lead": record,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under the dealer's secret."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer like any other non-2xx: the try fails


_opener = urllib.request.build_opener(_NoRedirects)


def erasure_email(settings, *, outbox_id: int, lead, dealer) -> EmailMessage:
    """The deletion notice to `dealer`: the person of lead N asked to be erased."""
    message = new_message()
    message["From"] = settings.mail_from
    message["To"] = Address(display_name=dealer.name, addr_spec=dealer.lead_email)
    message["Subject"] = f"Deletion request for lead {lead.id} from MINI USA Stay In the Loop"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(settings, outbox_id, "dealer_erasure_email")
    message.set_content(
        f"The person behind lead {lead.id} (sent to {dealer.name} on "
        f"{lead.created_at:%Y-%m-%d}) has asked MINI USA to erase their personal data.\n\n"
        f"Please delete every copy of lead {lead.id} (names, email address, ZIP code, interests) "
        "from your lead system and any other place you keep it, and do not contact the person "
        "on the basis of this lead.\n",
        subtype="plain",
        charset="utf-8",
    )
    return message


def erasure_webhook_body(*, outbox_id: int, lead, dealer) -> bytes:
    """The JSON the dealer's webhook receives when a lead's person was erased."""
    document = {
        "event": ERASURE_EVENT,
        "delivery": f"outbox-{outbox_id}",
        "dealer": {"code": dealer.code, "name": dealer.name},
        "lead": {"id": lead.id, "consent": "erased"},
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def post_webhook(
    url: str, secret: str, body: bytes, *, delivery: str, timeout: float, event: str = WEBHOOK_EVENT
) -> int:
    """POST the signed body; returns the 2xx status, raises `DeliveryError` for anything else."""
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Leadsvc-Event": event,
            "X-Leadsvc-Delivery": delivery,
            "X-Leadsvc-Timestamp": timestamp,
            "X-Leadsvc-Signature": webhook_signature(secret, timestamp, body),
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65_536)
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        raise DeliveryError(f"webhook answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryError(f"webhook unreachable: {redact(type(reason).__name__)}") from None
