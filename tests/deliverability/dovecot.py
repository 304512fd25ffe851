"""A private Dovecot IMAP server for the tests: its own configuration, a passwd-file user, plain
authentication on a free loopback port, a maildir; started and stopped by the `dovecot` fixture.

Dovecot refuses to run its login and mail processes as root. A test run as root therefore
gives them Debian's `dovenull` and `dovecot` users, and keeps the server's files in a directory
those users can reach (pytest's own temporary folders are private to root); any other user runs
every process as itself, in the test's `tmp_path`.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "bounce-mailbox-password"


@dataclass
class Dovecot:
    """A running server: its port, the user's maildir, and a way to file messages into it."""

    port: int
    maildir: Path
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        """BOUNCE_IMAP_URL for the user's INBOX."""
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def deliver(self, raw: bytes) -> None:
        """File one message into the INBOX, as an MTA's local delivery would (maildir new/)."""
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.leadsvc-test"
        temporary = self.maildir / "tmp" / name
        temporary.write_bytes(raw)
        os.replace(temporary, self.maildir / "new" / name)
        _give_to_mail_user(self.maildir / "new" / name)

    def folder(self, name: str) -> list[bytes]:
        """The messages in a folder now, read over IMAP (without marking them seen)."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            client.login(USER, PASSWORD)
            status, _ = client.select(f'"{name}"', readonly=True)
            assert status == "OK", f"no folder {name}"
            _, found = client.uid("SEARCH", None, "ALL")
            messages = []
            for uid in found[0].split():
                _, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
                messages.append(next(item[1] for item in data if isinstance(item, tuple)))
            return messages
        finally:
            client.logout()


def _mail_user() -> pwd.struct_passwd:
    """Who owns the mail: the test's own user, or Debian's `dovecot` user under root."""
    return pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _give_to_mail_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = _mail_user()
        os.chown(path, user.pw_uid, user.pw_gid)


def _config(root: Path, port: int) -> str:
    mail = _mail_user()
    if os.geteuid() == 0:
        login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
    else:
        login_user = internal_user = mail.pw_name
        internal_group = Path(root).group()
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail
first_valid_uid = {mail.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/home
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client = imaplib.IMAP4("127.0.0.1", port, timeout=2)
        client.login(USER, PASSWORD)
        client.logout()
        return True
    return False


@contextlib.contextmanager
def running_dovecot(tmp_path: Path, port: int):
    """Start Dovecot in the foreground on `port`; yield a `Dovecot`; stop it."""
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="leadsvc-dovecot-")) if as_root else tmp_path / "dovecot"
    root.mkdir(exist_ok=True)
    maildir = root / "mail"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (root / "home").mkdir()
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    (root / "dovecot.conf").write_text(_config(root, port))
    if as_root:
        root.chmod(0o755)
        user = _mail_user()
        for path in [root / "home", maildir, *maildir.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Dovecot(port, maildir, process, root / "dovecot.log")
    try:
        deadline = time.monotonic() + 15
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = server.log.read_text() if server.log.exists() else "(no log)"
                raise AssertionError(f"Dovecot did not start on port {port}:\n{log}")
            time.sleep(0.1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if as_root:
            shutil.rmtree(root, ignore_errors=True)
