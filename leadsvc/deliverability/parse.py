"""Reading what came back: delivery status notifications, complaints and auto-replies.

Bounces are recognised by flufl.bounce (GNU Mailman's detectors: RFC 3464 DSNs and the many
formats that are not), and their status codes read from the DSN's per-recipient fields where
there are some; complaints by their Abuse Reporting Format report (RFC 5965); auto-replies and
out-of-office answers (RFC 3834's Auto-Submitted and the headers mail programs use instead) are
recognised so they can be ignored. Which email a notification answers is read from the VERP
envelope address it was sent back to, else from the original's Message-ID it quotes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from leadsvc.ops.logs import redact
from leadsvc.outbound.tokens import VERP_LOCAL_PART

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
BOUNCE, AUTO_REPLY, UNRECOGNISED = "bounce", "auto_reply", "unrecognised"

_VERP_ADDRESS = re.compile(rf"{VERP_LOCAL_PART}\+([0-9]{{1,19}}-[0-9a-f]{{16}})@", re.IGNORECASE)
_STATUS = re.compile(r"\b([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}@[^<>\s]{1,250}>")
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|auto:|out of (the )?office|abwesenheitsnotiz)",
    re.IGNORECASE,
)


#: The detectors log every message they choke on with a traceback; leadsvc logs its own line.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


class MalformedMessage(ValueError):
    """The bytes are no message that can be read (the cause is in the text, with no address)."""


@dataclass(frozen=True)
class Notice:
    """One recipient's outcome in a notification."""

    kind: str  # hard | soft | complaint
    recipient: str | None
    envelope_token: str | None
    original_message_id: str | None
    status: str | None
    diagnostic: str | None
    #: The notification's own identity (its Message-ID, else a digest of its bytes).
    notification_id: str


@dataclass(frozen=True)
class Reading:
    verdict: str  # bounce | complaint | auto_reply | unrecognised
    notices: tuple[Notice, ...] = ()


def read_message(raw: bytes) -> Reading:
    """What one RFC 5322 message is. Raises `MalformedMessage` if it cannot be read at all."""
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
        if not message.keys():
            raise MalformedMessage("no header fields")
        return _read(message, raw)
    except MalformedMessage:
        raise
    except Exception as error:  # a detector or the parser choked on it: the message is bad
        raise MalformedMessage(f"unreadable: {type(error).__name__}") from None


def _read(message: Message, raw: bytes) -> Reading:
    identity = _header(message, "Message-ID") or hashlib.sha256(raw).hexdigest()
    token = envelope_token(message, raw)
    original = original_message_id(message)
    if _report_type(message) == "feedback-report":
        complaint = _complaint(message, identity, token, original)
        if complaint is not None:
            return Reading(COMPLAINT, (complaint,))
    temporary, permanent = all_failures(message)
    if temporary or permanent:
        fields = _dsn_fields(message)
        notices = [
            _bounce(address.decode("ascii"), address in permanent, fields, message)
            for address in sorted(permanent | temporary)
        ]
        return Reading(
            BOUNCE,
            tuple(
                Notice(kind, recipient, token, original, status, diagnostic, identity)
                for kind, recipient, status, diagnostic in notices
            ),
        )
    if _is_auto_reply(message):
        return Reading(AUTO_REPLY)
    if message.defects and not message.is_multipart():
        raise MalformedMessage(f"malformed: {type(message.defects[0]).__name__}")
    if any(part.defects for part in message.walk()):
        raise MalformedMessage("malformed MIME structure")
    return Reading(UNRECOGNISED)


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    return str(value).strip() if value is not None else None


def _report_type(message: Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    report = message.get_param("report-type")
    return report.lower() if isinstance(report, str) else None


def envelope_token(message: Message, raw: bytes) -> str | None:
    """The VERP token of the address the notification came back to, if it names one."""
    for name in _ENVELOPE_HEADERS:
        for value in message.get_all(name) or []:
            found = _VERP_ADDRESS.search(str(value))
            if found:
                return found[1].lower()
    found = _VERP_ADDRESS.search(raw.decode("latin-1"))
    return found[1].lower() if found else None


def verp_token_in(text: str | None) -> str | None:
    """The VERP token of the `bounces+<token>@...` address in `text` (a provider's copy of the
    envelope sender), if there is one."""
    found = _VERP_ADDRESS.search(text or "")
    return found[1].lower() if found else None


def message_id_in(text: str | None) -> str | None:
    """The first `<...@...>` Message-ID in `text`, if there is one."""
    found = _MESSAGE_ID.search(text or "")
    return found[0] if found else None


def _quoted_headers(message: Message) -> list[Message]:
    """The original email's header blocks the notification quotes (message/rfc822 or
    text/rfc822-headers parts)."""
    quoted = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            quoted.extend(p for p in part.get_payload() if isinstance(p, Message))
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True) or b""
            quoted.append(HeaderParser().parsestr(payload.decode("utf-8", "replace")))
    return quoted


def original_message_id(message: Message) -> str | None:
    """The Message-ID of the email the notification is about, if it quotes one."""
    for headers in _quoted_headers(message):
        value = headers.get("Message-ID")
        if value and _MESSAGE_ID.search(str(value)):
            return _MESSAGE_ID.search(str(value))[0]
    for name in ("X-Original-Message-ID", "In-Reply-To", "References"):
        value = message.get(name)
        if value and _MESSAGE_ID.search(str(value)):
            return _MESSAGE_ID.search(str(value))[0]
    return None


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    return [HeaderParser().parsestr(text) for text in str(payload).split("\n\n") if text.strip()]


def _dsn_fields(message: Message) -> dict[str, tuple[str | None, str | None]]:
    """Per recipient (lower case) of the DSN parts: its Status and Diagnostic-Code."""
    fields: dict[str, tuple[str | None, str | None]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
            if not recipient:
                continue
            address = parseaddr(str(recipient).partition(";")[2].strip())[1].lower()
            status = _STATUS.search(str(block.get("Status", "")))
            diagnostic = block.get("Diagnostic-Code")
            fields[address] = (
                status[1] if status else None,
                " ".join(str(diagnostic).split()) if diagnostic else None,
            )
    return fields


def _bounce(address: str, permanent: bool, fields, message: Message):
    status, diagnostic = fields.get(address.lower(), (None, None))
    if status is None:
        status = _status_in_text(message)
    if status is not None and status[0] in "45":
        hard = status.startswith("5")
    else:
        hard = permanent
    shown = redact(diagnostic, 300) if diagnostic else None
    return (HARD if hard else SOFT), address, status, shown


def _status_in_text(message: Message) -> str | None:
    for part in message.walk():
        if part.get_content_maintype() == "text" and part.get_content_subtype() == "plain":
            payload = part.get_payload(decode=True) or b""
            found = _STATUS.search(payload.decode("utf-8", "replace"))
            if found and found[1][0] in "45":
                return found[1]
    return None


def _complaint(message: Message, identity: str, token: str | None, original: str | None):
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        for block in _blocks(part):
            if not block.get("Feedback-Type"):
                continue
            feedback = str(block["Feedback-Type"]).strip().lower()
            recipients = getaddresses([str(v) for v in block.get_all("Original-Rcpt-To") or []])
            recipient = next((address for _, address in recipients if address), None)
            if token is None:
                found = _VERP_ADDRESS.search(str(block.get("Original-Mail-From", "")))
                token = found[1].lower() if found else None
            return Notice(COMPLAINT, recipient, token, original, None, feedback[:300], identity)
    return None


def _is_auto_reply(message: Message) -> bool:
    submitted = (_header(message, "Auto-Submitted") or "no").lower()
    if submitted != "no":
        return True
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse")):
        return True
    if (_header(message, "Precedence") or "").lower() == "auto_reply":
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(_header(message, "Subject") or ""))
