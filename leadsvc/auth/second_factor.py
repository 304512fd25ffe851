"""The optional second factor of a staff account: TOTP codes (RFC 6238) from an authenticator app.

Enrolment keeps a new secret as pending until a code from it is typed, so a mistyped set-up never
locks anyone out. A code is accepted once: the time step it belongs to is stored, and only a
later step is taken next (checked and stored in one UPDATE, so two requests cannot both use one
code). Wrong codes count as failed sign-ins (per account and per IP), with the same limits.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.auth.audit import Actor, record_action
from leadsvc.auth.models import StaffUser
from leadsvc.auth.users import find_user, over_failure_limit, record_failure
from leadsvc.db import utcnow

ISSUER = "MINI USA staff console"
#: Roles that must use a second factor when REQUIRE_2FA is set.
STRONG_ROLES = ("admin", "compliance")
#: Steps of clock drift accepted either side of now (one step is 30 seconds).
DRIFT_STEPS = 1


def needs_enrolment(user_role: str, has_second_factor: bool, required: bool) -> bool:
    """True when REQUIRE_2FA holds this account back until it enrols."""
    return required and user_role in STRONG_ROLES and not has_second_factor


def pending_secret(session: Session, user: StaffUser) -> str:
    """The secret being set up for `user` (made once, kept until confirmed); commits."""
    if not user.totp_pending_secret:
        user.totp_pending_secret = pyotp.random_base32()
        session.commit()
    return user.totp_pending_secret


def provisioning_uri(user: StaffUser, secret: str) -> str:
    """The otpauth:// URI an authenticator app reads (typed in, or scanned as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code is `code` (within the drift allowed), or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return current + offset
    return None


def _take_step(session: Session, user: StaffUser, step: int, **values) -> bool:
    """Store `step` as the last one used, if no code of it or a later step was taken before."""
    result = session.execute(
        sa.update(StaffUser)
        .where(
            StaffUser.id == user.id,
            sa.or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def check_code(session: Session, user: StaffUser, code: str, ip: str) -> tuple[bool, bool]:
    """Check a sign-in code of an enrolled account: (accepted, limited). A wrong or replayed
    code is recorded as a failed sign-in; commits."""
    if over_failure_limit(session, user.email, ip):
        return False, True
    step = _matching_step(user.totp_secret or "", code, utcnow())
    if step is not None and _take_step(session, user, step):
        session.commit()
        return True, False
    record_failure(session, user.email, ip)
    return False, False


def confirm_enrolment(
    session: Session, actor: Actor, user: StaffUser, code: str, ip: str
) -> tuple[bool, bool]:
    """Turn the pending secret on when `code` comes from it: (accepted, limited); commits."""
    if over_failure_limit(session, user.email, ip):
        return False, True
    secret = user.totp_pending_secret
    step = _matching_step(secret, code, utcnow()) if secret else None
    if step is None or not _take_step(
        session, user, step, totp_secret=secret, totp_pending_secret=None
    ):
        record_failure(session, user.email, ip)
        return False, False
    record_action(session, actor, "user.enrol_2fa", user.email)
    session.commit()
    session.refresh(user)
    return True, False


def reset_second_factor(session: Session, actor: Actor, email: str) -> StaffUser:
    """Remove the account's second factor (a lost phone); its sessions end. Commits."""
    user = find_user(session, email)
    user.totp_secret = user.totp_pending_secret = user.totp_last_step = None
    user.session_version += 1
    record_action(session, actor, "user.reset_2fa", user.email)
    session.commit()
    return user
