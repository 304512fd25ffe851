"""Amazon SES bounce and complaint notifications, delivered by Amazon SNS to an HTTP endpoint.

Every SNS message is signed (SignatureVersion 1: RSA with SHA-1; 2: RSA with SHA-256) over its
own fields, with the key of the certificate at its SigningCertURL. That URL is fetched only from
an SNS host (`https://sns.<region>.amazonaws.com`, or `.com.cn`), never following a redirect,
and the key kept for the next message. Only topics listed in SES_TOPIC_ARNS are taken: anyone
can have SNS sign a message for a topic of their own. A SubscriptionConfirmation is confirmed by
visiting its SubscribeURL, again only on an SNS host.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from leadsvc.deliverability.parse import (
    COMPLAINT,
    HARD,
    SOFT,
    Notice,
    message_id_in,
    verp_token_in,
)
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
    from cryptography.hazmat.primitives.asymmetric import rsa

# cryptography (about 17 MB of memory) is imported by the functions that check a signature, so
# a web process that never receives a notification does not carry it.

NOTIFICATION = "Notification"
SUBSCRIBE = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
#: The fields each type of message is signed over, in the order they are signed.
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
SIGNED_FIELDS[UNSUBSCRIBE] = SIGNED_FIELDS[SUBSCRIBE]
#: SignatureVersion -> the name of its hash in `cryptography.hazmat.primitives.hashes`.
HASHES = {"1": "SHA1", "2": "SHA256"}
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
#: Printable ASCII without spaces: nothing a URL parser and an HTTP client could read apart.
_PLAIN_URL = re.compile(r"[\x21-\x7e]{1,2000}")
_MAX_CERTIFICATE_BYTES = 64 * 1024
_CACHE_SIZE = 16


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error here: the certificate must come from the SNS host itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class SnsCertificates:
    """Fetches SNS signing certificates from trusted origins only, and keeps their keys."""

    def __init__(self, trusted_origin: str, timeout: float):
        self._origin = re.compile(trusted_origin)
        self._timeout = timeout
        self._keys: dict[str, tuple[rsa.RSAPublicKey, datetime]] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoRedirects())

    def trusted(self, url) -> bool:
        """Whether `url` is on a trusted origin (`scheme://host`, matched in full)."""
        if not isinstance(url, str) or not _PLAIN_URL.fullmatch(url):
            return False
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        return bool(self._origin.fullmatch(f"{parts.scheme}://{parts.netloc}"))

    def fetch(self, url: str, limit: int = _MAX_CERTIFICATE_BYTES) -> bytes:
        """GET a trusted URL (never redirected); raises OSError when that fails."""
        if not self.trusted(url):
            raise Refused(403, "The URL is not on an Amazon SNS host.")
        with self._opener.open(url, timeout=self._timeout) as response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise OSError("the reply is too large")
        return data

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at `url`, fetched once and kept while it is valid;
        OSError if it cannot be fetched."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        now = datetime.now(UTC)
        with self._lock:
            kept = self._keys.get(url)
        if kept is not None and kept[1] > now:
            return kept[0]
        data = self.fetch(url)  # OSError if SNS cannot be reached: the caller may try again
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise Refused(403, "The signing certificate cannot be read.") from None
        key = certificate.public_key()
        valid = certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc
        if not valid or not isinstance(key, rsa.RSAPublicKey):
            raise Refused(403, "The signing certificate is expired or not an RSA certificate.")
        with self._lock:
            if len(self._keys) >= _CACHE_SIZE:
                self._keys.clear()
            self._keys[url] = (key, certificate.not_valid_after_utc)
        return key


def string_to_sign(message: dict) -> bytes:
    """The text SNS signs: each signed field present, as its name and value on two lines."""
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        if name in message:
            lines += [name, str(message[name])]
    return "".join(line + "\n" for line in lines).encode()


def verify(message: dict, certificates: SnsCertificates) -> None:
    """Refuse the message unless SNS signed it (see the module)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = message.get("Signature")
    if not signature or not message.get("SigningCertURL"):
        raise Refused(401, "The notification is not signed.")
    hash_name = HASHES.get(str(message.get("SignatureVersion")))
    if hash_name is None:
        raise Refused(403, "The signature version is not one Amazon SNS uses.")
    if not certificates.trusted(message["SigningCertURL"]):
        raise Refused(403, "The signing certificate is not on an Amazon SNS host.")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(403, "The signature is not base64.") from None
    key = certificates.public_key(message["SigningCertURL"])
    try:
        key.verify(
            raw_signature, string_to_sign(message), padding.PKCS1v15(), getattr(hashes, hash_name)()
        )
    except InvalidSignature:
        raise Refused(403, "The signature does not match.") from None


def read_call(settings, call: Call, certificates: SnsCertificates) -> Reading:
    """A genuine SNS message of one of our topics, read; `Refused` or `Unreadable` if not."""
    message = load_json(call.body)
    kind = message.get("Type") if isinstance(message, dict) else None
    if kind not in SIGNED_FIELDS:
        raise Refused(401, "This is no Amazon SNS message.")
    required = [n for n in SIGNED_FIELDS[kind] if n != "Subject"]
    if not all(isinstance(message.get(name), str) for name in required):
        raise Refused(401, "The notification lacks the fields Amazon SNS signs.")
    if message["TopicArn"] not in settings.ses_topic_arns:
        raise Refused(403, "The topic is not one this service takes (SES_TOPIC_ARNS).")
    try:
        moment = datetime.fromisoformat(message["Timestamp"])
    except ValueError:
        raise Refused(403, "The timestamp cannot be read.") from None
    if moment.tzinfo is None:
        raise Refused(403, "The timestamp has no time zone.")
    check_fresh(moment)
    verify(message, certificates)
    delivery_id = f"sns:{message['MessageId']}"[:128]
    digest = digest_of(string_to_sign(message))
    if kind == SUBSCRIBE:
        if not certificates.trusted(message["SubscribeURL"]):
            raise Refused(403, "The subscription URL is not on an Amazon SNS host.")
        return Reading((Delivery(delivery_id, digest),), subscribe_url=message["SubscribeURL"])
    if kind == UNSUBSCRIBE:
        return Reading((Delivery(delivery_id, digest),))
    notices = ses_notices(load_json(message["Message"].encode()), delivery_id)
    return Reading((Delivery(delivery_id, digest, notices),))


def confirm_subscription(url: str, certificates: SnsCertificates) -> None:
    """Visit a SubscriptionConfirmation's SubscribeURL (an SNS host only); OSError on failure."""
    certificates.fetch(url)


def ses_notices(notification, notification_id: str) -> tuple[Notice, ...]:
    """The bounces and complaints in an SES notification (or event); none for other types."""
    if not isinstance(notification, dict):
        raise Unreadable("the SNS message is not an SES notification")
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    token = verp_token_in(text(mail.get("source"), 500))
    original = _original_message_id(mail)

    def notice(kind, recipient, status=None, diagnostic=None):
        return Notice(kind, recipient, token, original, status, diagnostic, notification_id)

    if kind == "Bounce":
        bounce = _part(notification, "bounce")
        hard = bounce.get("bounceType") == "Permanent"
        return tuple(
            notice(
                HARD if hard else SOFT,
                text(each.get("emailAddress"), 320),
                _status(each.get("status")),
                redact(diagnostic) if (diagnostic := text(each.get("diagnosticCode"))) else None,
            )
            for each in _recipients(bounce, "bouncedRecipients")
        )
    if kind == "Complaint":
        complaint = _part(notification, "complaint")
        feedback = text(complaint.get("complaintFeedbackType")) or "abuse"
        return tuple(
            notice(COMPLAINT, text(each.get("emailAddress"), 320), None, feedback)
            for each in _recipients(complaint, "complainedRecipients")
        )
    return ()


def _part(notification: dict, name: str) -> dict:
    part = notification.get(name)
    if not isinstance(part, dict):
        raise Unreadable(f"the SES notification has no {name} object")
    return part


def _recipients(part: dict, name: str) -> list[dict]:
    recipients = part.get(name)
    if not isinstance(recipients, list) or not all(isinstance(r, dict) for r in recipients):
        raise Unreadable(f"the SES notification has no {name} list")
    return recipients


def _status(value) -> str | None:
    return value if isinstance(value, str) and _STATUS.fullmatch(value) else None


def _original_message_id(mail: dict) -> str | None:
    """The Message-ID our email went out with, from the original headers SES includes."""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return message_id_in(text(header.get("value"), 500))
    common = mail.get("commonHeaders")
    return message_id_in(text(common.get("messageId"), 500)) if isinstance(common, dict) else None
