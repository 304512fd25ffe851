"""Outbound messages: the emails to the person and the dealer notifications, and their links.

`messages` builds the emails (Jinja templates, RFC 8058 one-click unsubscribe headers),
`mail` hands them to SMTP or to .eml files, `dealer_notice` builds the ADF email and the signed
webhook, `tokens` signs the confirm and unsubscribe links, `subscription` holds the consent
changes those links make, `plan` decides which outbox jobs a signup or confirmation needs, and
`views` serves the confirm and unsubscribe pages.
"""
