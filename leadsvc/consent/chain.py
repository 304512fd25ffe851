"""Tamper evidence for consent events: a digest per event and a hash chain of seals.

Each event's `digest` is the SHA-256 of its content, in which the person appears only as the
keyed hash of their address (`subject_hash`). Erasure replaces the address by
`erased:<subject_hash>`, so the digest recomputes the same before and after: erasure is provable
and does not break the chain.

`seal_pending` (run by the relay and the in-process drainer, never by a signup) covers the events
since the last seal, in chain order, with one seal: the digest of their `id:digest` lines, the
count, the positions, and the previous seal's hash. On PostgreSQL the chain order is the inserting
transaction's id, and only events below the oldest running transaction are sealed, so an event
that commits late still lands in a later seal. `verify_chain` recomputes everything and names
the first event or seal that does not match.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from leadsvc.commit_order import settled_below
from leadsvc.consent.models import ConsentEvent, ConsentSeal
from leadsvc.db import utcnow

ERASED_PREFIX = "erased:"
GENESIS = "0" * 64
#: Events per seal at most (a backlog is sealed in several links).
SEAL_BATCH = 50_000


def subject_key(secret_key: str | None = None) -> bytes:
    """The key of subject hashes, derived from SECRET_KEY (rotating it needs a re-key step)."""
    return _derived_subject_key(secret_key or current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=8)
def _derived_subject_key(secret: str) -> bytes:
    return hashlib.sha256(b"leadsvc.consent.subject:" + secret.encode()).digest()


def subject_hash(email: str, key: bytes) -> str:
    """The keyed hash of a person's address (compared without regard to letter case)."""
    return hmac.digest(key, email.strip().lower().encode(), "sha256").hex()


def hashed_subject(subject: str, key: bytes) -> str:
    """The subject's keyed hash, whether the event still holds the address or was erased."""
    if subject.startswith(ERASED_PREFIX):
        return subject.removeprefix(ERASED_PREFIX)
    return subject_hash(subject, key)


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _content_text(
    *,
    lead_id,
    subject: str,
    event_type: str,
    text_version: int,
    occurred_at: datetime,
    ip,
    user_agent,
    source_url,
    request_id,
    key: bytes,
) -> str:
    """The canonical JSON of an event's content (ASCII only), the subject as its keyed hash."""
    content = {
        "lead_id": lead_id,
        "subject": hashed_subject(subject, key),
        "type": event_type,
        "text_version": text_version,
        "occurred_at": _timestamp(occurred_at),
        "ip": ip,
        "user_agent": user_agent,
        "source_url": source_url,
        "request_id": request_id,
    }
    return json.dumps(content, sort_keys=True)


def event_digest(**fields) -> str:
    """SHA-256 of an event's content (the subject as its keyed hash); the fields are
    `_content_text`'s."""
    return hashlib.sha256(_content_text(**fields).encode()).hexdigest()


#: How the lead id appears in the content text (keys sorted: "ip" comes before it, "occurred_at"
#: after). Quotes inside values are escaped, so this text can only be the key itself.
_LEAD_ID_SLOT = '"lead_id": 0, "occurred_at": '


def digest_around_lead_id(**fields) -> tuple[str, str]:
    """The content text of an event whose lead id is not known yet, cut where the id goes:
    `event_digest(lead_id=n, ...)` is the SHA-256 of `head + str(n) + tail`. Lets PostgreSQL
    compute the digest of an event written in the same statement as its lead."""
    text = _content_text(lead_id=0, **fields)
    head, slot, rest = text.partition(_LEAD_ID_SLOT)
    if not slot or _LEAD_ID_SLOT in rest:
        raise ValueError("the event content has no single lead id slot")
    return head + '"lead_id": ', ', "occurred_at": ' + rest


def digest_of(event: ConsentEvent, key: bytes) -> str:
    return event_digest(
        lead_id=event.lead_id,
        subject=event.subject,
        event_type=event.event_type,
        text_version=event.text_version,
        occurred_at=event.occurred_at,
        ip=event.ip,
        user_agent=event.user_agent,
        source_url=event.source_url,
        request_id=event.request_id,
        key=key,
    )


def _seal_hash(prev_hash: str, seq: int, first: tuple, last: tuple, count: int, events: str) -> str:
    line = f"{prev_hash}|{seq}|{first[0]}:{first[1]}|{last[0]}:{last[1]}|{count}|{events}"
    return hashlib.sha256(line.encode()).hexdigest()


_ORDER = (sa.func.coalesce(ConsentEvent.txid, 0), ConsentEvent.id)


def _events_after(
    session: Session,
    after: tuple[int, int],
    until: tuple[int, int] | None = None,
    horizon: int | None = None,
    limit: int | None = None,
):
    position = sa.tuple_(*_ORDER)
    # Plain rows, not ORM objects: a verification reads every event, and building a million
    # mapped objects cost several times the hashing itself. A row has the same attribute names.
    columns = ConsentEvent.__table__.c
    query = sa.select(*columns, _ORDER[0].label("chain_txid")).where(position > sa.tuple_(*after))
    if until is not None:
        query = query.where(position <= sa.tuple_(*until))
    if horizon is not None:
        query = query.where(_ORDER[0] < horizon)
    query = query.order_by(*_ORDER)
    if limit is not None:
        query = query.limit(limit)
    return session.execute(query.execution_options(yield_per=2000))


def _last_seal(session: Session) -> ConsentSeal | None:
    return session.scalar(sa.select(ConsentSeal).order_by(ConsentSeal.seq.desc()).limit(1))


@dataclass(frozen=True)
class SealReport:
    seals: int
    events: int


def seal_pending(session: Session, key: bytes | None = None) -> SealReport:
    """Seal every settled, unsealed event into new links of the chain; commits."""
    key = key or subject_key()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('leadsvc.seal'))"))
    horizon = settled_below(session)
    seals = events = 0
    while True:
        last = _last_seal(session)
        after = (last.last_txid, last.last_event_id) if last else (-1, 0)
        rows = list(_events_after(session, after, horizon=horizon, limit=SEAL_BATCH))
        if not rows:
            break
        lines = []
        for event in rows:
            lines.append(f"{event.id}:{event.digest or digest_of(event, key)}")
        first = (rows[0].chain_txid, rows[0].id)
        last_pos = (rows[-1].chain_txid, rows[-1].id)
        events_digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        seq = (last.seq + 1) if last else 1
        prev = last.seal_hash if last else GENESIS
        session.add(
            ConsentSeal(
                seq=seq,
                sealed_at=utcnow(),
                first_txid=first[0],
                first_event_id=first[1],
                last_txid=last_pos[0],
                last_event_id=last_pos[1],
                event_count=len(rows),
                events_digest=events_digest,
                prev_hash=prev,
                seal_hash=_seal_hash(prev, seq, first, last_pos, len(rows), events_digest),
            )
        )
        session.flush()
        seals, events = seals + 1, events + len(rows)
        if len(rows) < SEAL_BATCH:
            break
    session.commit()
    return SealReport(seals, events)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    seals: int
    events: int
    unsealed: int
    problem: str | None = None


def _problems(session: Session, key: bytes) -> Iterator[str | tuple[int, int]]:
    """Yield a description of each mismatch in chain order, or (seals, events) when done."""
    prev, previous_last, events = GENESIS, (-1, 0), 0
    seals = list(session.scalars(sa.select(ConsentSeal).order_by(ConsentSeal.seq)))
    for number, seal in enumerate(seals, 1):
        if seal.seq != number:
            yield f"seal {seal.seq} is out of place: expected seal {number}"
            return
        if seal.prev_hash != prev:
            yield f"seal {seal.seq} does not follow seal {seal.seq - 1} (previous hash differs)"
            return
        first, last = (seal.first_txid, seal.first_event_id), (seal.last_txid, seal.last_event_id)
        lines, count, expected_first = [], 0, None
        for event in _events_after(session, previous_last, until=last):
            count += 1
            expected_first = expected_first or (event.chain_txid, event.id)
            recomputed = digest_of(event, key)
            if event.digest is not None and event.digest != recomputed:
                yield f"consent event {event.id} was changed (its content does not match its hash)"
                return
            lines.append(f"{event.id}:{event.digest or recomputed}")
        events_digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        if count != seal.event_count or expected_first != first:
            yield (
                f"seal {seal.seq} covers {seal.event_count} events but {count} are there "
                "(an event was deleted or inserted)"
            )
            return
        if events_digest != seal.events_digest:
            yield f"seal {seal.seq}: an event it covers was changed (events digest differs)"
            return
        if _seal_hash(prev, seal.seq, first, last, count, events_digest) != seal.seal_hash:
            yield f"seal {seal.seq} was changed (its hash does not match its content)"
            return
        prev, previous_last, events = seal.seal_hash, last, events + count
    yield (len(seals), events)


def verify_chain(session: Session, key: bytes | None = None) -> VerifyReport:
    """Recompute every event digest and seal; report the first that does not match."""
    key = key or subject_key()
    outcome = None
    for outcome in _problems(session, key):
        if isinstance(outcome, str):
            return VerifyReport(False, 0, 0, 0, outcome)
    seals, events = outcome
    last = _last_seal(session)
    after = (last.last_txid, last.last_event_id) if last else (-1, 0)
    unsealed = session.scalar(
        sa.select(sa.func.count())
        .select_from(ConsentEvent)
        .where(sa.tuple_(*_ORDER) > sa.tuple_(*after))
    )
    return VerifyReport(True, seals, events, unsealed)


def seal_for_app(app) -> SealReport:
    """One sealing pass for `app` (the relay's and the in-process drainer's periodic step)."""
    from leadsvc.extensions import db

    with db.sessionmaker(app)() as session:
        return seal_pending(session, subject_key(app.config["SECRET_KEY"]))
