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

Any answer but 2xx, and any timeout, fails the try (retried); redirects are not followed. The
URL's host is resolved and checked before each call (`leadsvc.webhook_targets`), and the call
goes to that checked address: a URL that points at this machine, a private or link-local network
or a cloud metadata service fails its row for good, unless WEBHOOK_ALLOWED_NETWORKS allows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import urllib3

from leadsvc.dealers.adf import adf_document
from leadsvc.dealers.leads import lead_record
from leadsvc.ops.logs import redact
from leadsvc.outbound.mail import new_message
from leadsvc.outbound.messages import message_id
from leadsvc.outbox.kinds import DeliveryError
from leadsvc.webhook_targets import (
    RefusedTarget,
    Resolver,
    WebhookTarget,
    resolve_webhook_target,
    system_resolver,
)

WEBHOOK_EVENT = "lead.created"
ERASURE_EVENT = "lead.erased"
REMINDER_EVENT = "lead.reminder"
MOVED_EVENT = "lead.reassigned"
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


def _dealer_email(settings, *, outbox_id: int, kind: str, dealer, subject: str, text: str):
    message = new_message()
    message["From"] = settings.mail_from
    message["To"] = Address(display_name=dealer.name, addr_spec=dealer.lead_email)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(settings, outbox_id, kind)
    message.set_content(text, subtype="plain", charset="utf-8")
    return message


def reminder_email(settings, *, outbox_id: int, lead, dealer, target_hours: float) -> EmailMessage:
    """The reminder to `dealer`: half of its response target for lead N has passed."""
    unit = "business hours" if settings.business_hours else "hours"
    return _dealer_email(
        settings,
        outbox_id=outbox_id,
        kind="dealer_reminder_email",
        dealer=dealer,
        subject=f"Reminder: lead {lead.id} from MINI USA Stay In the Loop is waiting",
        text=(
            f"Lead {lead.id}, sent to {dealer.name}, has not been answered yet: half of your "
            f"response target of {target_hours:g} {unit} has passed.\n\n"
            f"Please contact the person and mark the lead answered (acknowledge it through the "
            f"dealer lead API, or POST /api/v1/dealer/leads/{lead.id}/answer). If the target "
            "passes without an answer, the lead may be offered to another MINI dealer.\n"
        ),
    )


def moved_email(settings, *, outbox_id: int, lead, dealer) -> EmailMessage:
    """The notice to `dealer` that lead N went to another dealer at its response target."""
    return _dealer_email(
        settings,
        outbox_id=outbox_id,
        kind="dealer_moved_email",
        dealer=dealer,
        subject=f"Lead {lead.id} from MINI USA Stay In the Loop has been reassigned",
        text=(
            f"Lead {lead.id} was not answered within {dealer.name}'s response target, so it "
            "has been offered to another MINI dealer. It no longer appears in your lead feed; "
            "please do not contact the person on the basis of this lead.\n"
        ),
    )


def follow_up_webhook_body(*, event: str, outbox_id: int, lead, dealer, **extra) -> bytes:
    """The JSON of a `lead.reminder` (the lead as the dealer API shows it, and the target) or
    `lead.reassigned` event (the lead's id only: it is no longer this dealer's)."""
    if event == REMINDER_EVENT:
        shown = {key: _json_value(value) for key, value in lead_record(lead).items()}
    else:
        shown = {"id": lead.id}
    document = {
        "event": event,
        "delivery": f"outbox-{outbox_id}",
        "dealer": {"code": dealer.code, "name": dealer.name},
        "lead": shown,
        **extra,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _connection_pool(target: WebhookTarget, timeout: float) -> urllib3.HTTPConnectionPool:
    """A pool that connects to the checked address only, naming the URL's host in TLS (SNI and
    the certificate check) as the URL does."""
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=limits,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=limits, retries=False)


class WebhookPools:
    """The connection pools of one batch's webhooks, one per checked address (and host name):
    the webhooks of a batch to one dealer's server share a kept-alive connection when the
    server keeps it open. `close()` (or the end of a `with` block) closes them."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.pools: dict[tuple, urllib3.HTTPConnectionPool] = {}

    def pool_for(self, target: WebhookTarget) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.address, target.port, target.host)
        if key not in self.pools:
            self.pools[key] = _connection_pool(target, self.timeout)
        return self.pools[key]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def __enter__(self) -> WebhookPools:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _reusable(response: urllib3.BaseHTTPResponse) -> bool:
    """Whether the connection may carry the next webhook: the reply was read to its end, and
    the server keeps the connection open (HTTP/1.1 without `Connection: close`)."""
    closing = "close" in response.headers.get("Connection", "").lower()
    return response.length_remaining == 0 and response.version >= 11 and not closing


def _host_header(target: WebhookTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def webhook_target(
    url: str, allowed_networks, resolve: Resolver = system_resolver
) -> WebhookTarget:
    """The checked address to call for `url`; `DeliveryError` (permanent when the URL points
    somewhere webhooks may not go, retried when its name does not resolve now)."""
    try:
        return resolve_webhook_target(url, allowed_networks, resolve)
    except RefusedTarget as error:
        raise DeliveryError(
            f"webhook refused: {error} (not in WEBHOOK_ALLOWED_NETWORKS)", permanent=True
        ) from None
    except (OSError, UnicodeError) as error:
        raise DeliveryError(
            f"webhook unreachable: its host name did not resolve ({error})"
        ) from None


def post_webhook(
    url: str,
    secret: str,
    body: bytes,
    *,
    delivery: str,
    timeout: float,
    event: str = WEBHOOK_EVENT,
    allowed_networks=(),
    resolve: Resolver = system_resolver,
    pools: WebhookPools | None = None,
) -> int:
    """POST the signed body to the resolved, checked address of `url`; returns the 2xx status,
    raises `DeliveryError` for anything else (a redirect is not followed). `pools`: the
    batch's connections (by default a connection of its own, closed at the end)."""
    target = webhook_target(url, allowed_networks, resolve)
    timestamp = str(int(time.time()))
    headers = {
        "Host": _host_header(target),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Leadsvc-Event": event,
        "X-Leadsvc-Delivery": delivery,
        "X-Leadsvc-Timestamp": timestamp,
        "X-Leadsvc-Signature": webhook_signature(secret, timestamp, body),
    }
    with contextlib.ExitStack() as own:
        if pools is None:
            pools = own.enter_context(WebhookPools(timeout))
        pool = pools.pool_for(target)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            response.read(65_536, decode_content=False)
            if not _reusable(response):
                response.close()
            response.release_conn()
        except urllib3.exceptions.TimeoutError:
            raise DeliveryError("webhook unreachable: TimeoutError") from None
        except urllib3.exceptions.HTTPError as error:
            cause = getattr(error, "reason", None) or error  # the socket's or TLS's own error
            raise DeliveryError(f"webhook unreachable: {redact(type(cause).__name__)}") from None
    if not 200 <= response.status < 300:
        raise DeliveryError(f"webhook answered {response.status}")
    return response.status
