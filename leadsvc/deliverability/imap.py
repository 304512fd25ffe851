"""Polling the bounce mailbox over IMAP (BOUNCE_IMAP_URL), with the standard library's imaplib.

`imaps://user:password@host[:port]/INBOX?processed=leadsvc-processed` (or `imap://`, plain or
with STARTTLS: `imap+starttls://`). Each message is read without marking it seen; what leadsvc
understood (a bounce or complaint recorded or already recorded, an auto-reply) is moved to the
`processed` folder; anything else (unrecognised, malformed, about mail that is not ours) stays
where it is for a person to look at. Nothing is ever deleted that was not copied first.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.orm import Session

from leadsvc.deliverability.ingest import MALFORMED, BatchReport, ingest_one
from leadsvc.deliverability.parse import AUTO_REPLY
from leadsvc.deliverability.record import DUPLICATE, RECORDED

log = logging.getLogger(__name__)
#: Outcomes after which a message has been dealt with and leaves the watched folder.
UNDERSTOOD = (RECORDED, DUPLICATE, AUTO_REPLY)
DEFAULT_PROCESSED = "leadsvc-processed"


@dataclass(frozen=True)
class ImapMailbox:
    scheme: str
    host: str
    port: int
    username: str
    password: str
    folder: str
    processed: str

    @classmethod
    def from_url(cls, url: str) -> ImapMailbox:
        parts = urlsplit(url)
        ports = {"imap": 143, "imap+starttls": 143, "imaps": 993}
        if parts.scheme not in ports or not parts.hostname or not parts.username:
            raise ValueError("BOUNCE_IMAP_URL must be imaps://user:password@host/FOLDER")
        query = parse_qs(parts.query)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or ports[parts.scheme],
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            processed=query.get("processed", [DEFAULT_PROCESSED])[0],
        )

    def connect(self, timeout: float = 30.0) -> imaplib.IMAP4:
        if self.scheme == "imaps":
            context = ssl.create_default_context()
            client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=timeout)
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
            if self.scheme == "imap+starttls":
                client.starttls(ssl.create_default_context())
        client.login(self.username, self.password)
        return client


def _check(reply: tuple[str, list], what: str) -> list:
    status, data = reply
    if status != "OK":
        raise imaplib.IMAP4.error(f"{what} failed: {status}")
    return data


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def poll_mailbox(session: Session, settings, url: str | None = None) -> BatchReport:
    """Read every message in the folder once, act on it, move what was understood."""
    mailbox = ImapMailbox.from_url(url or settings.bounce_imap_url)
    report = BatchReport()
    client = mailbox.connect()
    try:
        client.create(_quoted(mailbox.processed))  # "already exists" is a NO: fine
        _check(client.select(_quoted(mailbox.folder)), "SELECT")
        uids = _check(client.uid("SEARCH", None, "ALL"), "SEARCH")[0].split()
        can_move = "MOVE" in _capabilities(client)
        moved = []
        for number, uid in enumerate(uids, start=1):
            data = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
            raw = next((item[1] for item in data if isinstance(item, tuple)), b"")
            outcome, detail = ingest_one(session, settings, raw, "message")
            report.outcomes[outcome] += 1
            if outcome == MALFORMED:
                log.warning(
                    "bounce poll: message %d is malformed (%s); left in place", number, *detail
                )
            else:
                report.kinds.update(detail)
            if outcome in UNDERSTOOD:
                moved.append(uid)
        _move(client, moved, mailbox.processed, can_move)
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    log.info("bounce poll: %s", report.summary())
    return report


def _capabilities(client: imaplib.IMAP4) -> set[str]:
    data = _check(client.capability(), "CAPABILITY")
    return set(b" ".join(data).decode("ascii", "replace").upper().split())


def _move(client: imaplib.IMAP4, uids: list[bytes], folder: str, can_move: bool) -> None:
    if not uids:
        return
    wanted = b",".join(uids).decode()
    if can_move:
        _check(client.uid("MOVE", wanted, _quoted(folder)), "MOVE")
        return
    _check(client.uid("COPY", wanted, _quoted(folder)), "COPY")
    _check(client.uid("STORE", wanted, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
    _check(client.expunge(), "EXPUNGE")
