"""SendGrid's Event Webhook, with its signed-webhook check on.

SendGrid signs the timestamp header followed by the raw body with ECDSA (P-256, SHA-256); the
signature (base64 DER) and the timestamp (Unix seconds) come in the
X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers, and the verification key (base64
DER) is the one SendGrid shows once signing is on (SENDGRID_WEBHOOK_PUBLIC_KEY). The body is a
JSON array of events; bounce, dropped, blocked, deferred and spamreport are acted on.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from leadsvc.deliverability.parse import COMPLAINT, HARD, SOFT, Notice, message_id_in
from leadsvc.deliverability.providers import (
    Call,
    Delivery,
    Reading,
    Refused,
    Unreadable,
    check_fresh,
    digest_of,
    load_json,
    text,
)
from leadsvc.ops.logs import redact

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography is imported where a key is read or a signature checked: a web process with no
# SendGrid key configured does not carry it (see providers.ses).

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_STATUS = re.compile(r"\b([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")


def public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """SENDGRID_WEBHOOK_PUBLIC_KEY as a key; ValueError if it is not an EC public key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve key")
    return key


def verify(call: Call, key: ec.EllipticCurvePublicKey) -> None:
    """Refuse the call unless its signature is SendGrid's and its timestamp recent."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = call.headers.get(SIGNATURE_HEADER)
    timestamp = call.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Refused(401, "The call is not signed.")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Refused(403, "The timestamp cannot be read.")
    check_fresh(datetime.fromtimestamp(int(timestamp), UTC))
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        key.verify(raw_signature, timestamp.encode() + call.body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise Refused(403, "The signature does not match.") from None


def read_call(settings, call: Call, key: ec.EllipticCurvePublicKey) -> Reading:
    """A genuine SendGrid call, read; `Refused` or `Unreadable` if not."""
    verify(call, key)
    events = load_json(call.body)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise Unreadable("the body is not a list of SendGrid events")
    return Reading(tuple(_delivery(event) for event in events))


def _delivery(event: dict) -> Delivery:
    digest = digest_of(event)
    event_id = text(event.get("sg_event_id"), 100) or digest
    notice = event_notice(event, f"sendgrid:{event_id}")
    return Delivery(f"sendgrid:{event_id}", digest, (notice,) if notice else ())


def event_notice(event: dict, notification_id: str) -> Notice | None:
    """The bounce or complaint one event reports, or None for any other event."""
    name = event.get("event")
    reason = text(event.get("reason")) or text(event.get("response"))
    status = _STATUS.search(str(event.get("status") or reason or ""))
    status = status[1] if status else None
    if name == "spamreport":
        kind = COMPLAINT
    elif name == "bounce":
        # A block (bounce of type "blocked") is about our sending, not the address.
        blocked = event.get("type") == "blocked" or (status or "").startswith("4")
        kind = SOFT if blocked else HARD
    elif name in ("blocked", "deferred"):
        kind = SOFT
        # Every retry of one message is deferred again: count the message once, not each try.
        message = text(event.get("sg_message_id"), 200)
        notification_id = f"sendgrid:deferred:{message}" if message else notification_id
    elif name == "dropped":
        kind = _dropped_kind(reason or "")
        if kind is None:
            return None
    else:
        return None
    return Notice(
        kind,
        text(event.get("email"), 320),
        None,
        message_id_in(text(event.get("smtp-id"), 500)),
        status,
        redact(reason) if reason else None,
        notification_id,
    )


def _dropped_kind(reason: str) -> str | None:
    """SendGrid dropped the email without trying: for a known-bad address, a hard bounce; for
    an address that reported spam, a complaint; for anything else (unsubscribed), nothing."""
    lowered = reason.lower()
    if "spam" in lowered:
        return COMPLAINT
    if "bounce" in lowered or "invalid" in lowered:
        return HARD
    return None
