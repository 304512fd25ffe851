"""Handing an email to SMTP (SMTP_URL) or, without it, to an .eml file under instance/mail/.

The hand-over has one point of no return, and the caller is told just before it: for SMTP the
server has answered DATA, and the message text and the final "." that makes the server accept it
are about to go (in one write); for a file, the file is written under a temporary name but not
yet renamed into place. Everything before that point can fail and be retried without the person
getting two emails; a failure after it is `UncertainDelivery` (the message may have arrived),
which the jobs never retry on their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

from leadsvc.ops.logs import redact
from leadsvc.outbox.kinds import DeliveryError, HandedOff, UncertainDelivery

#: Serialisation policies with RFC 5322's 998-character line limit: the long, unbreakable
#: List-Unsubscribe URLs then stay plain text (a 78-character fold would RFC 2047-encode them,
#: which mail providers' one-click parsers do not decode).
WIRE_SMTP = policy.SMTP.clone(max_line_length=998)
WIRE_SMTPUTF8 = policy.SMTPUTF8.clone(max_line_length=998)


def new_message() -> EmailMessage:
    """An empty email, built with the email package's default policy."""
    return EmailMessage(policy=policy.default)


@dataclass(frozen=True)
class SmtpTarget:
    """Where SMTP_URL points: smtp:// (plain), smtp+starttls:// or smtps:// (TLS from the start)."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "localhost",
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _envelope(message: EmailMessage, sender: str | None) -> tuple[str, list[str]]:
    sender = sender or parseaddr(str(message["From"]))[1]
    recipients = [address for _, address in getaddresses([str(message["To"])]) if address]
    return sender, recipients


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ending in CRLF (no final dot)."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class SessionEnded(Exception):
    """A reused SMTP session turned out closed by the server before this message's MAIL FROM
    was accepted: nothing of the message went, and a new session may take it."""


@dataclass(frozen=True)
class WireMessage:
    """One email as it goes on an SMTP session: the envelope, and the text with its final dot."""

    sender: str
    recipients: list[str]
    options: list[str]
    payload: bytes


class SmtpTransport:
    """Sends over SMTP with an explicit hand-over before the final "." of DATA.

    One SMTP session carries every message sent through the transport until `close()` (or the
    end of its `with` block): a batch of emails pays for the connection, the greeting and EHLO
    once. A refused message leaves the session to the next one (RSET); a session that broke, a
    refused hand-off or anything after it closes the session, and the next message opens a new
    one. A session the server closed between two messages is noticed at MAIL FROM, before
    anything of the message went, and the message goes on a new session."""

    def __init__(self, url: str, timeout: float):
        self.target = SmtpTarget.from_url(url)
        self.timeout = timeout
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """End the open session, if any, with QUIT."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
            client.close()

    def _drop(self) -> None:
        """Close the session without a word: in DATA, a QUIT would be message text."""
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        if target.scheme == "smtps":
            client = smtplib.SMTP_SSL(
                target.host, target.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
        try:
            client.ehlo()
            if target.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if target.username:
                client.login(target.username, target.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def send(
        self,
        message: EmailMessage,
        *,
        name: str,
        handed_off: HandedOff,
        sender: str | None = None,
    ) -> None:
        """Deliver `message`; `handed_off()` is called just before the point of no return.
        `sender`: the envelope sender (MAIL FROM), by default the From address."""
        sender, recipients = _envelope(message, sender)
        international = not (sender + "".join(recipients)).isascii()
        data = message.as_bytes(policy=WIRE_SMTPUTF8 if international else WIRE_SMTP)
        wire = WireMessage(
            sender,
            recipients,
            ["SMTPUTF8", "BODY=8BITMIME"] if international else [],
            # The text goes in one write with its final dot: a dot written on its own waits for
            # the text's acknowledgement (Nagle's algorithm against delayed ACKs), 40 ms an email.
            _dot_stuffed(data) + b".\r\n",
        )
        if self.client is not None:
            try:
                self._transaction(wire, handed_off, reused=True)
                return
            except SessionEnded:
                pass  # closed by the server since the last message: a new session takes it
        try:
            self.client = self._connect()
        except (OSError, smtplib.SMTPException) as error:
            raise _failure(error) from None
        self._transaction(wire, handed_off, reused=False)

    def _transaction(self, wire: WireMessage, handed_off: HandedOff, *, reused: bool) -> None:
        """One message on the open session: MAIL, RCPT, DATA, the hand-off, the text and its
        dot. Raises `SessionEnded` (only when `reused`), `DeliveryError` or `UncertainDelivery`."""
        client = self.client
        in_data = False  # after DATA's 354, anything written is message text
        try:
            if wire.options and not client.has_extn("smtputf8"):
                raise DeliveryError("the mail server has no SMTPUTF8", permanent=True)
            try:
                reply = client.mail(wire.sender, wire.options)
            except (OSError, smtplib.SMTPServerDisconnected):
                if reused:
                    raise SessionEnded from None
                raise
            if reused and reply[0] == 421:  # the server is closing the session
                raise SessionEnded
            self._expect(reply, (250,), "MAIL FROM")
            for recipient in wire.recipients:
                self._expect(client.rcpt(recipient), (250, 251), "RCPT TO")
            self._expect(client.docmd("DATA"), (354,), "DATA")
            in_data = True
            handed_off()  # may refuse: the session, in DATA, is then dropped
            try:
                client.send(wire.payload)
                reply = client.getreply()
                in_data = False
            except (OSError, smtplib.SMTPException) as error:
                raise UncertainDelivery(
                    f"connection lost waiting for the end-of-data reply: {type(error).__name__}"
                ) from None
            self._expect(reply, (250,), "end of data")
        except DeliveryError:  # the server refused this message: the session goes on
            if in_data:
                self._drop()
            else:
                self._reset()
            raise
        except (OSError, smtplib.SMTPException) as error:
            self._drop()
            raise _failure(error) from None
        except BaseException:  # SessionEnded, UncertainDelivery, a refused hand-off, a timeout
            self._drop()
            raise

    def _reset(self) -> None:
        """RSET after a refusal, so the session can take the next message; dropped if not."""
        try:
            code, _ = self.client.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    @staticmethod
    def _expect(reply: tuple[int, bytes], codes: tuple[int, ...], step: str) -> None:
        code, text = reply
        if code not in codes:
            detail = redact(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
            raise DeliveryError(f"SMTP {code} at {step}: {detail}", permanent=500 <= code < 600)


def _failure(error: OSError | smtplib.SMTPException) -> DeliveryError:
    detail = redact(str(error)) if isinstance(error, smtplib.SMTPResponseException) else ""
    return DeliveryError(f"SMTP: {type(error).__name__} {detail}".strip())


class MailDirectory:
    """The embedded default: each message written to `<dir>/<name>.eml` (one file per job)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def __enter__(self) -> MailDirectory:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close (the same interface as `SmtpTransport`)."""

    def send(
        self,
        message: EmailMessage,
        *,
        name: str,
        handed_off: HandedOff,
        sender: str | None = None,
    ) -> None:
        """Write the message; the envelope sender, if any, as its Return-Path (as a mailbox
        that delivered it would)."""
        if sender is not None and "Return-Path" not in message:
            message["Return-Path"] = f"<{sender}>"
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{name}.eml"
        temporary = self.directory / f".{name}.{os.getpid()}.tmp"
        temporary.write_bytes(message.as_bytes(policy=WIRE_SMTPUTF8))
        try:
            handed_off()
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, final)


def mail_transport(settings) -> SmtpTransport | MailDirectory:
    """SMTP when SMTP_URL is set, else .eml files under the instance folder."""
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, settings.smtp_timeout)
    return MailDirectory(settings.mail_dir)
