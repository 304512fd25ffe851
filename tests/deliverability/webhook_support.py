"""Helpers of the webhook tests: an SNS signer with a certificate the test makes and serves over
real HTTP, a SendGrid signer, and the counts a test compares before and after a call."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from leadsvc.consent.models import ConsentEvent
from leadsvc.deliverability.models import BounceEvent, WebhookDelivery
from leadsvc.deliverability.providers.ses import string_to_sign
from leadsvc.leads.models import Lead

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:leadsvc-bounces"
#: The origin the SNS tests allow instead of SNS's own: the test's server on the loopback.
LOCAL_ORIGIN = r"http://127\.0\.0\.1:[0-9]+"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def signing_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    """A key and its certificate (PEM), issued by a CA the test makes, as SNS's are."""
    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("sns.amazonaws.com"))
        .issuer_name(_name("Test Root CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class SnsServer:
    """A real HTTP server for the signing certificate and the subscription URL."""

    url: str = ""
    routes: dict[str, tuple[int, dict, bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        server_side = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server_side.requests.append(self.path)
                status, headers, body = server_side.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_port}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass
class SnsSigner:
    """Signs SNS messages as SNS does, with the test's key; its certificate at `cert_url`."""

    key: rsa.RSAPrivateKey
    cert_url: str
    topic_arn: str = TOPIC_ARN

    def sign(self, message: dict, version: str = "2") -> dict:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": self.cert_url,
        }

    def notification(self, ses: dict, message_id: str = "m-1", **changes) -> dict:
        message = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.topic_arn,
            "Message": json.dumps(ses),
            "Timestamp": now_iso(),
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            **changes,
        }
        return message


def now_iso(delta: timedelta = timedelta()) -> str:
    moment = datetime.now(UTC) + delta
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ses_bounce(sent, bounce_type: str = "Permanent", status: str = "5.1.1") -> dict:
    """An SES bounce notification about the email `sent` (tests.deliverability.support.Sent)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": sent.recipient,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 5.1.1 <{sent.recipient}>: user unknown",
                }
            ],
            "timestamp": now_iso(),
            "feedbackId": "0100018c-feedback",
        },
        "mail": _mail(sent),
    }


def ses_complaint(sent) -> dict:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": sent.recipient}],
            "timestamp": now_iso(),
            "feedbackId": "0100018c-complaint",
            "complaintFeedbackType": "abuse",
        },
        "mail": _mail(sent),
    }


def _mail(sent) -> dict:
    return {
        "timestamp": now_iso(),
        "source": sent.envelope_sender,
        "messageId": "0100018c-ses-own-id",
        "destination": [sent.recipient],
        "headersTruncated": False,
        "headers": [{"name": "Message-ID", "value": sent.message_id}],
        "commonHeaders": {"messageId": sent.message_id, "to": [sent.recipient]},
    }


class SendGridSigner:
    """Signs Event Webhook calls as SendGrid does, with a P-256 key the test makes."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict:
        stamp = str(timestamp if timestamp is not None else int(datetime.now(UTC).timestamp()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def state(session) -> dict:
    """What a call may change: bounce events, consent events, taken notifications, suppression."""
    session.rollback()
    return {
        "bounces": [
            (e.kind, e.source, e.status, e.suppressed, e.lead_id)
            for e in session.scalars(sa.select(BounceEvent).order_by(BounceEvent.id))
        ],
        "consent": session.scalar(sa.select(sa.func.count(ConsentEvent.id))),
        "taken": session.scalar(sa.select(sa.func.count(WebhookDelivery.id))),
        "bounced": session.scalars(sa.select(Lead.id).where(Lead.bounced_at.is_not(None))).all(),
        "withdrawn": session.scalars(
            sa.select(Lead.id).where(Lead.consent_status == "withdrawn")
        ).all(),
    }
