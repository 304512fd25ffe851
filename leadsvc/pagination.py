"""One cursor pager for every list endpoint: opaque, signed, bound to who asked and how.

A cursor carries the position after the last item served and a scope (the caller and the
filters). It is signed with the app's secret, so a forged cursor, or one taken from another
dealer or another filter, is refused instead of being interpreted.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

#: What the pager's cursors are made of (URL-safe base64 and dots); an OpenAPI pattern.
CURSOR_SHAPE = r"^[A-Za-z0-9_.-]*$"


class CursorError(ValueError):
    """The cursor was not issued for this request."""


class CursorPager:
    def __init__(self, secret_key: str, salt: str):
        self._serializer = URLSafeSerializer(secret_key, salt=f"leadsvc.cursor.{salt}")

    def encode(self, position: tuple, scope: dict[str, Any]) -> str:
        return self._serializer.dumps({"p": list(position), "s": scope})

    def decode(self, cursor: str, scope: dict[str, Any]) -> tuple:
        try:
            payload = self._serializer.loads(cursor)
        except BadSignature:
            raise CursorError("This cursor is not valid.") from None
        if not isinstance(payload, dict) or payload.get("s") != scope:
            raise CursorError("This cursor was issued for another request.")
        position = payload.get("p")
        if not isinstance(position, list) or not all(isinstance(v, int) for v in position):
            raise CursorError("This cursor is not valid.")
        return tuple(position)
