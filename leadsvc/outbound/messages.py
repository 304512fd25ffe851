"""The emails to the person: the confirmation and the welcome, both from Jinja templates.

Every one carries the brand's postal address, a visible unsubscribe link and a link to the
person's preferences page, List-Unsubscribe (an
https link with an opaque signed token, and a mailto), List-Unsubscribe-Post for RFC 8058
one-click unsubscribe, and List-Id (RFC 2919); a plain-text and an HTML part. None repeats the
names the person typed: a form that mails whatever name it is given is a spam relay (the "name"
becomes the message), and the address may not be theirs until they confirm. The MTA should
DKIM-sign the List-Unsubscribe headers (RFC 8058 asks for it); that is its job, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import quote

from flask import render_template

from leadsvc.outbound.mail import new_message
from leadsvc.outbound.tokens import link_tokens

WELCOME = "welcome_email"
CONFIRM = "confirm_email"
BRAND = "MINI USA"
LIST_NAME = "MINI USA Stay In the Loop"
SUBJECTS = {
    CONFIRM: "Please confirm your MINI USA Stay In the Loop signup",
    WELCOME: "Welcome to MINI USA Stay In the Loop",
}


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    unsubscribe_mailto: str
    confirm_url: str | None
    preferences_url: str


def links_for(settings, lead_id: int, *, confirm: bool, signup: int = 1) -> Links:
    """The person's unsubscribe link and mailto, the preferences page, and the confirm link
    (for the lead's `signup`-th signup) when one is needed."""
    tokens = link_tokens(settings)
    unsubscribe = tokens.unsubscribe_token(lead_id)
    base = settings.public_base_url
    return Links(
        unsubscribe_url=f"{base}/unsubscribe/{unsubscribe}",
        unsubscribe_mailto=(
            f"mailto:{settings.unsubscribe_mailto}?subject={quote('unsubscribe ' + unsubscribe)}"
        ),
        confirm_url=f"{base}/confirm/{tokens.confirm_token(lead_id, signup)}" if confirm else None,
        preferences_url=f"{base}/preferences/{tokens.preferences_token(lead_id, signup)}",
    )


def message_id(settings, outbox_id: int, kind: str) -> str:
    """The same Message-ID for every try of one job, so a mailbox can tell it is one message;
    its tag (`LinkTokens.message_tag`) makes it unguessable, so a forged bounce cannot name it."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
    tag = link_tokens(settings).message_tag(outbox_id, kind)
    return f"<outbox-{outbox_id}.{kind.replace('_', '-')}.{tag}@{domain}>"


def person_email(
    settings,
    *,
    kind: str,
    outbox_id: int,
    lead_id: int,
    to: str,
    dealer_name: str | None = None,
    signup: int = 1,
) -> EmailMessage:
    """The confirmation or welcome email for one lead (templates need an app context);
    `signup`: the lead's signup count, which its confirmation link is for."""
    links = links_for(settings, lead_id, confirm=kind == CONFIRM, signup=signup)
    context = {
        "brand": BRAND,
        "list_name": LIST_NAME,
        "postal_address": settings.brand_postal_address,
        "unsubscribe_url": links.unsubscribe_url,
        "preferences_url": links.preferences_url,
        "confirm_url": links.confirm_url,
        "confirm_days": settings.confirm_link_days,
        "dealer_name": dealer_name,
        "site_url": settings.public_base_url,
    }
    message = new_message()
    message["From"] = settings.mail_from
    message["To"] = Address(addr_spec=to)  # the bare address: no name the person typed
    message["Subject"] = SUBJECTS[kind]
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(settings, outbox_id, kind)
    message["List-Id"] = f'"{LIST_NAME}" <{settings.list_id}>'
    message["List-Unsubscribe"] = f"<{links.unsubscribe_url}>, <{links.unsubscribe_mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(render_template(f"outbound/email/{kind}.txt", **context))
    html = render_template(f"outbound/email/{kind}.html", **context)
    message.add_alternative(html, subtype="html")
    return message
