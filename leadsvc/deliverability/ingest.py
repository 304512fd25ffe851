"""Ingesting notifications: one message at a time, or a batch of them (files, mbox, stdin).

Every message gets one outcome, counted in the batch's report: bounce or complaint recorded,
duplicate (ingested before), unmatched (about no email of ours), auto_reply (ignored),
unrecognised, or malformed. A malformed message is counted and logged, by its place in the
batch and the cause only (no address, no content), and the batch goes on.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from leadsvc.deliverability.parse import (
    AUTO_REPLY,
    UNRECOGNISED,
    MalformedMessage,
    read_message,
)
from leadsvc.deliverability.record import DUPLICATE, RECORDED, UNMATCHED, record_notice

log = logging.getLogger(__name__)
MALFORMED = "malformed"
#: An mbox "From " separator line (mboxo/mboxrd), at the start of the data or after a newline.
_MBOX_SEPARATOR = re.compile(rb"(?:\A|\r?\n)From [^\r\n]*\r?\n")


@dataclass
class BatchReport:
    """What a batch did: messages by outcome, and recorded events by kind."""

    outcomes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)

    def add(self, other: BatchReport) -> None:
        self.outcomes.update(other.outcomes)
        self.kinds.update(other.kinds)

    def summary(self) -> str:
        parts = [f"{name} {count}" for name, count in sorted(self.outcomes.items())]
        kinds = [f"{name} {count}" for name, count in sorted(self.kinds.items())]
        text = ", ".join(parts) or "no messages"
        return text + (f" (recorded: {', '.join(kinds)})" if kinds else "")


def split_messages(data: bytes) -> list[bytes]:
    """The messages in `data`: an mbox if it starts with a "From " line, else one message."""
    if not data.startswith(b"From "):
        return [data] if data.strip() else []
    pieces = _MBOX_SEPARATOR.split(data)
    return [re.sub(rb"(?m)^>(>*From )", rb"\1", piece) for piece in pieces if piece.strip()]


def ingest_message(session: Session, settings, raw: bytes, source: str = "message") -> str:
    """Read one message and act on it; its outcome (see the module). Never raises for a bad
    message: the outcome says "malformed"."""
    outcome, _ = ingest_one(session, settings, raw, source)
    return outcome


def ingest_one(session: Session, settings, raw: bytes, source: str) -> tuple[str, list[str]]:
    """One message's outcome, and the kinds it recorded (or, if malformed, the cause)."""
    try:
        reading = read_message(raw)
    except MalformedMessage as error:
        return MALFORMED, [str(error)]
    if reading.verdict in (AUTO_REPLY, UNRECOGNISED):
        return reading.verdict, []
    outcomes, kinds = [], []
    for notice in reading.notices:
        outcome = record_notice(session, settings, notice, source)
        outcomes.append(outcome)
        if outcome == RECORDED:
            kinds.append(notice.kind)
    for wanted in (RECORDED, DUPLICATE):
        if wanted in outcomes:
            return wanted, kinds
    return UNMATCHED, kinds


def ingest_batch(
    session: Session, settings, messages: Iterable[bytes], source: str = "message"
) -> BatchReport:
    """Ingest every message; one bad message never stops the rest."""
    report = BatchReport()
    for number, raw in enumerate(messages, start=1):
        outcome, detail = ingest_one(session, settings, raw, source)
        report.outcomes[outcome] += 1
        if outcome == MALFORMED:
            log.warning("bounce ingest: message %d of the batch is malformed (%s)", number, *detail)
        else:
            report.kinds.update(detail)
    log.info("bounce ingest: %s", report.summary())
    return report


def messages_of(datas: Iterable[bytes]) -> Iterator[bytes]:
    for data in datas:
        yield from split_messages(data)
