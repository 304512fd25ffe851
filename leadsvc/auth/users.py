"""Staff accounts: creation, listing, disabling, passwords (Argon2) and checked sign-in.

Failed sign-ins are counted per account (a keyed hash of the name typed, so unknown names count
too and tell nothing apart) and per client IP; while either is over its limit every attempt,
right or wrong, is refused with the same message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy.orm import Session

from leadsvc.auth.audit import Actor, record_action
from leadsvc.auth.keys import DEALERS, ROLES
from leadsvc.auth.models import StaffSignInFailure, StaffUser
from leadsvc.db import utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 200
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
#: Argon2id with argon2-cffi's recommended parameters (RFC 9106 low-memory profile).
password_hasher = PasswordHasher()
#: Verified against when the account does not exist, so both cases take the same time.
_NO_SUCH_ACCOUNT = password_hasher.hash("no such account; this hash only spends the same time")


class UserError(ValueError):
    """A request the accounts cannot take; the message is for the person who made it."""


@dataclass(frozen=True)
class SignIn:
    user: StaffUser | None
    #: Too many failures for this account or IP: refused whatever was typed.
    limited: bool = False


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise UserError("Please enter a valid email address.")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"The password must be at least {MIN_PASSWORD} characters long.")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"The password must be at most {MAX_PASSWORD} characters long.")
    return password


def _dealer_id(session: Session, role: str, dealer_code: str | None) -> int | None:
    if role not in ROLES:
        raise UserError(f"The role must be one of {', '.join(ROLES)}.")
    if role != "dealer":
        if dealer_code:
            raise UserError("Only dealer accounts belong to a dealer.")
        return None
    if not dealer_code:
        raise UserError("A dealer account needs its dealer's code (--dealer CODE).")
    dealer_id = session.scalar(sa.select(DEALERS.c.id).where(DEALERS.c.code == dealer_code.upper()))
    if dealer_id is None:
        raise UserError(f"There is no dealer with code {dealer_code.upper()}.")
    return dealer_id


def find_user(session: Session, email: str) -> StaffUser:
    user = session.scalar(sa.select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if user is None:
        raise UserError("There is no account with this email address.")
    return user


def create_user(
    session: Session, actor: Actor, email: str, password: str, role: str, dealer_code=None
) -> StaffUser:
    """A new account; the password is hashed with Argon2id. Commits, with its audit entry."""
    email = normalise_email(email)
    dealer_id = _dealer_id(session, role, dealer_code)
    check_password(password)
    if session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise UserError("An account with this email address exists already.")
    user = StaffUser(
        email=email,
        password_hash=password_hasher.hash(password),
        role=role,
        dealer_id=dealer_id,
        session_version=1,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    record_action(session, actor, "user.create", email, {"role": role, "dealer": dealer_code})
    session.commit()
    return user


def list_users(session: Session) -> list[tuple[StaffUser, str | None]]:
    """Every account with its dealer's code, by email."""
    rows = session.execute(
        sa.select(StaffUser, DEALERS.c.code)
        .outerjoin(DEALERS, DEALERS.c.id == StaffUser.dealer_id)
        .order_by(StaffUser.email)
    )
    return [(user, code) for user, code in rows]


def disable_user(session: Session, actor: Actor, email: str) -> StaffUser:
    """Disable the account; its open sessions end at their next request. Commits."""
    user = find_user(session, email)
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        user.session_version += 1
        record_action(session, actor, "user.disable", user.email)
        session.commit()
    return user


def reset_password(session: Session, actor: Actor, email: str, password: str) -> StaffUser:
    """Set a new password (and end the account's sessions). Commits."""
    user = find_user(session, email)
    user.password_hash = password_hasher.hash(check_password(password))
    user.session_version += 1
    record_action(session, actor, "user.reset_password", user.email)
    session.commit()
    return user


def _failures(session: Session, column, value: str) -> int:
    since = utcnow() - FAILURE_WINDOW
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(StaffSignInFailure)
        .where(column == value, StaffSignInFailure.failed_at >= since)
    )


def _account_key(email: str) -> str:
    """The name typed, as a keyed hash: failures are counted without storing what was typed."""
    key = current_app.secret_key.encode()
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


def over_failure_limit(session: Session, email: str, ip: str) -> bool:
    """Too many recent failures for this account name or this IP: refuse whatever is typed."""
    return (
        _failures(session, StaffSignInFailure.account, _account_key(email))
        >= MAX_FAILURES_PER_ACCOUNT
        or _failures(session, StaffSignInFailure.ip, ip) >= MAX_FAILURES_PER_IP
    )


def record_failure(session: Session, email: str, ip: str) -> None:
    """Count one failed sign-in step (a password or a second-factor code); commits."""
    session.add(StaffSignInFailure(account=_account_key(email), ip=ip[:64], failed_at=utcnow()))
    session.commit()


def sign_in(session: Session, email: str, password: str, ip: str) -> SignIn:
    """Check a sign-in. A refused one is recorded as a failure; an accepted one is stamped."""
    if over_failure_limit(session, email, ip):
        return SignIn(None, limited=True)
    user = session.scalar(
        sa.select(StaffUser).where(
            StaffUser.email == email.strip().lower()[:254], StaffUser.disabled_at.is_(None)
        )
    )
    try:
        password_hasher.verify(
            user.password_hash if user else _NO_SUCH_ACCOUNT, password[:MAX_PASSWORD]
        )
        accepted = user is not None
    except (VerificationError, InvalidHashError):
        accepted = False
    if not accepted:
        record_failure(session, email, ip)
        return SignIn(None)
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    user.last_sign_in_at = utcnow()
    session.commit()
    return SignIn(user)
