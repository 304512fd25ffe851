"""Outbound messages: the emails to the person and the dealer notifications, and their links.

`messages` builds the emails (Jinja templates, RFC 8058 one-click unsubscribe headers),
`mail` hands them to SMTP or to .eml files, `dealer_notice` builds the ADF email and the signed
webhook, `tokens` signs the confirm, unsubscribe and preferences links, `subscription` and
`preferences` hold the consent changes those links make, `views` serves their pages, and
`delivery` registers how each outbox kind of this package is prepared and sent.
"""


def init_app(app) -> None:
    """Register the senders of this package's outbox kinds."""
    from leadsvc.outbound.delivery import register_senders

    register_senders()
