"""The registry of outbox kinds: how a row of each kind is prepared and sent.

A domain registers each kind it writes (`register`) when its package is initialised; the job
that runs a row (`leadsvc.jobs.tasks`) looks the kind up here, so it imports no domain's
models. The contract between the two:

- `prepare(settings, session, row)` reads what the message needs, in the claim's transaction,
  and returns the ready `Outgoing` or a `Skip` (the message must not go out any more); the
  optional `preload(session, rows)` reads it for a whole batch first;
- `transmit(settings, outgoing, handed_off, connections)` sends it, calling `handed_off()` just
  before the point of no return, and raises `DeliveryError` (certainly not delivered) or
  `UncertainDelivery` (it may have arrived). `connections` (`Connections`) holds what the
  messages of one batch share, such as an SMTP session, and closes it at the batch's end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

#: Queues, in the order workers take from them: a webhook is a quick call that puts the lead in
#: the dealer's system, while emails wait on an SMTP server that may be slow or refusing.
WEBHOOK_CHANNEL = "webhooks"
EMAIL_CHANNEL = "outbound"
CHANNELS = (WEBHOOK_CHANNEL, EMAIL_CHANNEL)

HandedOff = Callable[[], None]


class DeliveryError(Exception):
    """The message was certainly not delivered. `permanent`: retrying will not help (5xx)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class UncertainDelivery(Exception):
    """The connection failed after the point of no return: the message may have arrived."""


@dataclass(frozen=True)
class RowRef:
    """What a sender gets of the row it prepares."""

    id: int
    kind: str
    lead_id: int
    dealer_id: int | None


@dataclass(frozen=True)
class Skip:
    """The row is not to be sent (the person unsubscribed, the lead moved): why, and what to do
    instead in the same transaction (`then(session)`, for example notify the lead's new dealer)."""

    reason: str
    then: Callable[[Session], Any] | None = None


@dataclass(frozen=True)
class Outgoing:
    """One message ready to send; `message` is whatever the kind's `transmit` takes."""

    outbox_id: int
    kind: str
    message: Any
    #: The email's Message-ID, stored on the row with the claim (bounces quote it).
    message_id: str | None = None


class Connections:
    """What the messages of one batch share: each connection opened by the first message that
    asks for it (`shared`), kept for the others, and closed when the batch ends (`close`, or
    the end of a `with` block), even if the batch was interrupted."""

    def __init__(self):
        self.open: dict[Hashable, Any] = {}
        self.closing = contextlib.ExitStack()

    def shared(self, key: Hashable, opener: Callable[[], AbstractContextManager]) -> Any:
        """The connection called `key`, opened with `opener()` (a context manager) the first
        time it is asked for."""
        if key not in self.open:
            self.open[key] = self.closing.enter_context(opener())
        return self.open[key]

    def close(self) -> None:
        self.open.clear()
        self.closing.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class Kind:
    name: str
    channel: str
    prepare: Callable[[Any, Session, RowRef], Outgoing | Skip]
    transmit: Callable[[Any, Outgoing, HandedOff, Connections], None]
    #: True when the other side deduplicates on the delivery id (a webhook): a try that died
    #: after the hand-off is retried; otherwise (an email) its row ends `unknown`.
    idempotent: bool = False
    #: `preload(session, rows)` reads what `prepare` needs for many rows at once (a query per
    #: table, not per row) into the session and returns it (keep it while preparing).
    preload: Callable[[Session, list[RowRef]], Any] | None = None


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> None:
    """Add `kind` (registering the same name again replaces it)."""
    if kind.channel not in CHANNELS:
        raise ValueError(f"unknown channel {kind.channel!r}")
    _KINDS[kind.name] = kind


def kind_of(name: str) -> Kind:
    """The registered kind called `name`; LookupError if no package registered it."""
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(f"no sender registered for outbox kind {name!r}") from None


def channel_of(name: str) -> str:
    """The queue a row of kind `name` goes to (emails when the kind is not registered)."""
    kind = _KINDS.get(name)
    return kind.channel if kind is not None else EMAIL_CHANNEL


def is_idempotent(name: str) -> bool:
    kind = _KINDS.get(name)
    return kind is not None and kind.idempotent
