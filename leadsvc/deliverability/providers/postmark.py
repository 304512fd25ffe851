"""Postmark's Bounce and Spam Complaint webhooks, sent with HTTP basic credentials.

Postmark signs nothing: the webhook URL is configured with a user and password
(POSTMARK_WEBHOOK_USER/PASSWORD), compared in constant time. Postmark's MessageID is its own, so
the email is found by the Message-ID quoted in the bounce's Content when Postmark includes it,
else by the recipient's address.
"""

from __future__ import annotations

import hmac
from email import message_from_bytes, policy

from leadsvc.deliverability.parse import (
    COMPLAINT,
    HARD,
    SOFT,
    Notice,
    envelope_token,
    original_message_id,
)
from leadsvc.deliverability.providers import (
    Call,
    Delivery,
    Reading,
    Refused,
    Unreadable,
    digest_of,
    load_json,
    text,
)
from leadsvc.ops.logs import redact

CHALLENGE = {"WWW-Authenticate": 'Basic realm="leadsvc bounces", charset="UTF-8"'}
#: Postmark's bounce types that say the address is bad, and those that may pass.
HARD_TYPES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
SOFT_TYPES = {"Transient", "SoftBounce", "DnsError", "Blocked", "Unknown"}


def check_credentials(settings, call: Call) -> None:
    """Refuse (401, with the Basic challenge) a call without the configured credentials."""
    if call.username is None or call.password is None:
        raise Refused(401, "The call carries no credentials.", CHALLENGE)
    good_user = hmac.compare_digest(call.username.encode(), settings.postmark_webhook_user.encode())
    good_password = hmac.compare_digest(
        call.password.encode(), settings.postmark_webhook_password.encode()
    )
    if not (good_user and good_password):
        raise Refused(401, "The credentials are wrong.", CHALLENGE)


def read_call(settings, call: Call) -> Reading:
    """A Postmark call with the right credentials, read; `Refused` or `Unreadable` if not."""
    check_credentials(settings, call)
    record = load_json(call.body)
    if not isinstance(record, dict) or not isinstance(record.get("RecordType"), str):
        raise Unreadable("the body is not a Postmark webhook record")
    record_id = text(record.get("ID"), 64)
    if record_id is None:
        raise Unreadable("the record has no ID")
    delivery_id = f"postmark:{record['RecordType']}:{record_id}"[:128]
    notice = record_notice(record, delivery_id)
    return Reading((Delivery(delivery_id, digest_of(record), (notice,) if notice else ()),))


def record_notice(record: dict, notification_id: str) -> Notice | None:
    """The bounce or complaint a record reports, or None (deliveries, auto-responders...)."""
    kind = None
    if record["RecordType"] == "SpamComplaint":
        kind = COMPLAINT
    elif record["RecordType"] == "Bounce":
        bounce_type = record.get("Type")
        kind = HARD if bounce_type in HARD_TYPES else SOFT if bounce_type in SOFT_TYPES else None
    if kind is None:
        return None
    details = text(record.get("Details")) or text(record.get("Description"))
    return Notice(
        kind,
        text(record.get("Email"), 320),
        *_quoted(record.get("Content")),
        None,
        redact(details) if details else None,
        notification_id,
    )


def _quoted(content) -> tuple[str | None, str | None]:
    """The VERP token and original Message-ID in the bounce message Postmark passes on."""
    if not isinstance(content, str) or not content.strip():
        return None, None
    raw = content.encode("utf-8", "replace")
    message = message_from_bytes(raw, policy=policy.compat32)
    return envelope_token(message, raw), original_message_id(message)
