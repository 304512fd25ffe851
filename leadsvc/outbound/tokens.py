"""Signed, opaque link tokens for confirming and unsubscribing (itsdangerous).

A token carries only the lead id, signed with the app's SECRET_KEY under a salt per purpose, so
a confirm token is no unsubscribe token and no email address appears in any link. Confirm tokens
expire (CONFIRM_LINK_DAYS); unsubscribe tokens do not, because an email sits in an inbox for
years and its unsubscribe link must keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM_SALT = "leadsvc.outbound.confirm"
UNSUBSCRIBE_SALT = "leadsvc.outbound.unsubscribe"


class InvalidToken(ValueError):
    """The token is malformed, tampered with, or for another purpose."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is too old."""


@dataclass(frozen=True)
class LinkTokens:
    """Makes and reads the tokens of one app (its secret key and confirm-link lifetime)."""

    secret_key: str
    confirm_max_age_seconds: int

    def _serializer(self, salt: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt=salt)

    def confirm_token(self, lead_id: int) -> str:
        return self._serializer(CONFIRM_SALT).dumps(lead_id)

    def unsubscribe_token(self, lead_id: int) -> str:
        return self._serializer(UNSUBSCRIBE_SALT).dumps(lead_id)

    def confirm_lead_id(self, token: str) -> int:
        return self._load(CONFIRM_SALT, token, self.confirm_max_age_seconds)

    def unsubscribe_lead_id(self, token: str) -> int:
        return self._load(UNSUBSCRIBE_SALT, token, None)

    def _load(self, salt: str, token: str, max_age: int | None) -> int:
        try:
            value = self._serializer(salt).loads(token, max_age=max_age)
        except SignatureExpired:
            raise ExpiredToken("the link has expired") from None
        except BadSignature:
            raise InvalidToken("the link is not valid") from None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidToken("the link is not valid")
        return value


def link_tokens(settings) -> LinkTokens:
    """The tokens for `settings` (a `leadsvc.settings.Settings`)."""
    return LinkTokens(settings.secret_key, settings.confirm_link_days * 86_400)
