"""Signed, opaque link tokens for confirming, unsubscribing and the preferences page
(itsdangerous), and the VERP envelope tokens that say which outbox row a bounce answers.

A token carries only the lead id, signed with the app's SECRET_KEY under a salt per purpose, so
a confirm token is no unsubscribe token and no email address appears in any link. A confirm
token also carries the signup it was sent for (the lead's signup count then): after a new
signup, an older confirmation link no longer confirms anything; a preferences token carries it
too, so an older email's preferences page cannot change a later signup's choices. Confirm
tokens expire (CONFIRM_LINK_DAYS); unsubscribe and preferences tokens do not, because an email
sits in an inbox for years and its unsubscribe link must keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM_SALT = "leadsvc.outbound.confirm"
UNSUBSCRIBE_SALT = "leadsvc.outbound.unsubscribe"
PREFERENCES_SALT = "leadsvc.outbound.preferences"
VERP_SALT = b"leadsvc.outbound.verp"
MESSAGE_ID_SALT = b"leadsvc.outbound.message-id"
#: The envelope sender's local part before `+<token>`: `bounces+<token>@BOUNCE_DOMAIN`.
VERP_LOCAL_PART = "bounces"
#: `<outbox id>-<16 hex digits of HMAC-SHA256>`: lower case only (some MTAs fold local parts).
_VERP = re.compile(r"([1-9][0-9]{0,18})-([0-9a-f]{16})")


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

    def confirm_token(self, lead_id: int, signup: int = 1) -> str:
        """The confirmation link of the lead's `signup`-th signup."""
        return self._serializer(CONFIRM_SALT).dumps([lead_id, signup])

    def unsubscribe_token(self, lead_id: int) -> str:
        return self._serializer(UNSUBSCRIBE_SALT).dumps(lead_id)

    def preferences_token(self, lead_id: int, signup: int) -> str:
        """The preferences page of the lead's `signup`-th signup."""
        return self._serializer(PREFERENCES_SALT).dumps([lead_id, signup])

    def preferences_target(self, token: str) -> tuple[int, int]:
        """The lead id and the signup a preferences link was sent for."""
        value = self._load(PREFERENCES_SALT, token, None)
        if isinstance(value, list) and len(value) == 2 and all(map(_positive, value)):
            return value[0], value[1]
        raise InvalidToken("the link is not valid")

    def confirm_target(self, token: str) -> tuple[int, int]:
        """The lead id and the signup (its number) a confirmation link was sent for. A link
        made before signups were numbered carries the lead id alone: it counts as the first."""
        value = self._load(CONFIRM_SALT, token, self.confirm_max_age_seconds)
        if _positive(value):
            return value, 1
        if isinstance(value, list) and len(value) == 2 and all(map(_positive, value)):
            return value[0], value[1]
        raise InvalidToken("the link is not valid")

    def unsubscribe_lead_id(self, token: str) -> int:
        return self._lead_id(self._load(UNSUBSCRIBE_SALT, token, None))

    def verp_token(self, outbox_id: int) -> str:
        """The envelope token of outbox row `outbox_id` (`bounces+<token>@BOUNCE_DOMAIN`)."""
        return f"{outbox_id}-{self._verp_mac(outbox_id)}"

    def verp_outbox_id(self, token: str) -> int:
        """The outbox row a VERP token names; InvalidToken if it is not one of ours."""
        match = _VERP.fullmatch(token.strip().lower())
        if match is None:
            raise InvalidToken("not an envelope token")
        outbox_id = int(match[1])
        if not hmac.compare_digest(match[2], self._verp_mac(outbox_id)):
            raise InvalidToken("not an envelope token")
        return outbox_id

    def message_tag(self, outbox_id: int, kind: str) -> str:
        """The secret part of an email's Message-ID: 128 bits of HMAC-SHA256 of the row and kind,
        the same for every try of the row, and not to be guessed without SECRET_KEY (a bounce
        that quotes a Message-ID is believed only because nobody else could know it)."""
        key = hashlib.sha256(MESSAGE_ID_SALT + self.secret_key.encode()).digest()
        text = f"{outbox_id}:{kind}".encode()
        return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]

    def _verp_mac(self, outbox_id: int) -> str:
        key = hashlib.sha256(VERP_SALT + self.secret_key.encode()).digest()
        return hmac.new(key, str(outbox_id).encode(), hashlib.sha256).hexdigest()[:16]

    def _load(self, salt: str, token: str, max_age: int | None):
        try:
            return self._serializer(salt).loads(token, max_age=max_age)
        except SignatureExpired:
            raise ExpiredToken("the link has expired") from None
        except BadSignature:
            raise InvalidToken("the link is not valid") from None

    @staticmethod
    def _lead_id(value) -> int:
        if not _positive(value):
            raise InvalidToken("the link is not valid")
        return value


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def link_tokens(settings) -> LinkTokens:
    """The tokens for `settings` (a `leadsvc.settings.Settings`)."""
    return LinkTokens(settings.secret_key, settings.confirm_link_days * 86_400)
