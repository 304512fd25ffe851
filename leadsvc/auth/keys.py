"""Creating, listing, revoking and checking API keys.

A key looks like `lsk_AbCd1234_<43 random characters>`. `lsk_AbCd1234` is its public prefix
(stored, shown in listings); the whole key is hashed with SHA-256 (it carries 256 random bits, so
a slow hash adds nothing) and compared in constant time. The key is printed once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.auth.models import ApiKey
from leadsvc.db import utcnow

ROLES = ("dealer", "compliance", "admin")
#: `last_used_at` is written at most this often per key (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: The dealer columns a key's checks read. A lightweight table clause, not the model: auth sits
#: below the dealers package, whose API it guards.
DEALERS = sa.table(
    "dealers",
    sa.column("id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("active", sa.Boolean),
)
_PREFIX_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's prefix, role and (for dealer keys) dealer."""

    key_id: int
    prefix: str
    role: str
    dealer_id: int | None


def create_key(
    session: Session, role: str, dealer_code: str | None = None, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for `role` (dealer keys name their dealer); returns the row and the key itself."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    dealer_id = None
    if role == "dealer":
        if not dealer_code:
            raise ValueError("a dealer key needs --dealer CODE")
        dealer_id = session.scalar(
            sa.select(DEALERS.c.id).where(DEALERS.c.code == dealer_code.upper())
        )
        if dealer_id is None:
            raise ValueError(f"no dealer with code {dealer_code.upper()}")
    elif dealer_code:
        raise ValueError("only dealer keys belong to a dealer")
    prefix = "lsk_" + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        prefix=prefix,
        key_hash=_hash(key),
        role=role,
        dealer_id=dealer_id,
        name=(name or None) and name[:100],
        created_at=utcnow(),
    )
    session.add(row)
    session.commit()
    return row, key


def list_keys(session: Session) -> list[tuple[ApiKey, str | None]]:
    """Every key with its dealer's code, newest first."""
    rows = session.execute(
        sa.select(ApiKey, DEALERS.c.code)
        .outerjoin(DEALERS, DEALERS.c.id == ApiKey.dealer_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    return [(key, code) for key, code in rows]


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Revoke the key with this public prefix; it fails from the next request on."""
    key = session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise LookupError(f"no key with prefix {prefix}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def authenticate(session: Session, presented: str) -> Principal | None:
    """The principal for a presented key, or None for an unknown, malformed or revoked one, or a
    dealer key whose dealer is inactive (checked at each call: the key itself is not revoked)."""
    parts = presented.split("_")
    if len(parts) < 3 or parts[0] != "lsk" or len(presented) > 200:
        return None
    prefix = f"lsk_{parts[1]}"
    row = session.execute(
        sa.select(ApiKey.id, ApiKey.key_hash, ApiKey.role, ApiKey.dealer_id, ApiKey.last_used_at)
        .outerjoin(DEALERS, DEALERS.c.id == ApiKey.dealer_id)
        .where(
            ApiKey.prefix == prefix,
            ApiKey.revoked_at.is_(None),
            sa.or_(ApiKey.dealer_id.is_(None), DEALERS.c.active.is_(True)),
        )
    ).one_or_none()
    # Compare even when no row matched, so timing does not tell a known prefix from an unknown.
    expected = row.key_hash if row else _hash("no such key")
    if not hmac.compare_digest(expected, _hash(presented)) or row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        session.execute(sa.update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        session.commit()
    return Principal(row.id, prefix, row.role, row.dealer_id)
