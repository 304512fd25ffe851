"""The SMTP hand-over against a real server: dot-stuffing, the point of no return, failures,
one session for many messages."""

import time
from email.message import EmailMessage

import pytest

from leadsvc.outbound.mail import (
    DeliveryError,
    MailDirectory,
    SmtpTarget,
    SmtpTransport,
    redact,
)
from leadsvc.settings import Settings, SettingsError
from tests.servers import smtp_server


def message(body: str, to: str = "person@example.com") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "sender@example.com"
    mail["To"] = to
    mail["Subject"] = "test"
    mail.set_content(body)
    return mail


def bodies(smtp) -> list[str]:
    return [received.get_content().strip() for received in smtp.messages()]


def test_lines_starting_with_a_dot_arrive_intact_and_hand_off_comes_before_acceptance(smtp):
    seen_at_hand_off = []
    body = "first\n.hidden by a naive client\n.\nlast\n"
    SmtpTransport(smtp.url, timeout=5).send(
        message(body), name="x", handed_off=lambda: seen_at_hand_off.append(len(smtp.received))
    )
    [received] = smtp.wait_for(1)
    assert received.get_content().replace("\r\n", "\n") == body
    assert seen_at_hand_off == [0]  # called once, before the server had accepted anything


def test_a_failure_before_the_hand_off_never_reaches_it(smtp):
    smtp.reject_codes = ["554 5.7.1 <person@example.com> rejected"]
    handed = []
    with pytest.raises(DeliveryError) as failure:
        SmtpTransport(smtp.url, timeout=5).send(
            message("x"), name="x", handed_off=lambda: handed.append(1)
        )
    assert failure.value.permanent
    assert "person@" not in str(failure.value)
    assert handed == [1]  # the rejection came in answer to the final dot: after the hand-off


def test_a_refused_hand_off_sends_nothing(smtp):
    def refuse():
        raise RuntimeError("claim lost")

    with pytest.raises(RuntimeError, match="claim lost"):
        SmtpTransport(smtp.url, timeout=5).send(message("x"), name="x", handed_off=refuse)
    assert smtp.received == []


@pytest.mark.alone
def test_the_final_dot_does_not_wait_for_the_text_to_be_acknowledged(smtp):
    """The message text and its final dot go in one write: a dot written on its own waits for
    the acknowledgement of the text (Nagle's algorithm against the server's delayed ACK, at
    least 40 ms on Linux), which cost every email that long. The fastest of ten sends shows it
    (load on the machine slows some sends, not all)."""
    transport = SmtpTransport(smtp.url, timeout=5)
    durations = []
    for _ in range(10):
        started = time.perf_counter()
        transport.send(message("hello " * 500), name="x", handed_off=lambda: None)
        durations.append(time.perf_counter() - started)
    assert len(smtp.wait_for(10)) == 10
    assert min(durations) < 0.035, durations


def test_the_messages_sent_through_one_transport_share_one_smtp_session(smtp):
    with SmtpTransport(smtp.url, timeout=5) as transport:
        for n in range(5):
            transport.send(message(f"message {n}"), name=str(n), handed_off=lambda: None)
    assert bodies(smtp) == [f"message {n}" for n in range(5)]
    assert len(set(smtp.peers)) == 1  # one connection carried them all


def test_a_refused_message_leaves_the_session_to_the_next_ones(smtp):
    """Refused at RCPT TO (permanent) and at the end of DATA (temporary), in the middle of a
    batch: the refused ones are not delivered, the others arrive once each on the one session."""
    smtp.refused_recipients = {"gone@example.com": "550 5.1.1 mailbox unavailable"}
    failures = []
    with SmtpTransport(smtp.url, timeout=5) as transport:
        for n, to in enumerate(["a@example.com", "gone@example.com", "b@example.com", "c@x.org"]):
            if n == 3:
                smtp.reject_codes = ["451 4.3.0 try again later"]
            try:
                transport.send(message(f"message {n}", to), name=str(n), handed_off=lambda: None)
            except DeliveryError as error:
                failures.append((n, error.permanent, str(error)))
        transport.send(message("message 4"), name="4", handed_off=lambda: None)
    assert failures == [
        (1, True, "SMTP 550 at RCPT TO: 5.1.1 mailbox unavailable"),
        (3, False, "SMTP 451 at end of data: 4.3.0 try again later"),
    ]
    assert bodies(smtp) == ["message 0", "message 2", "message 4"]
    assert len(set(smtp.peers)) == 1


def test_a_refused_hand_off_in_a_batch_ends_that_session_only(smtp):
    """The hand-off refused in DATA: the session is dropped without the final dot (so that
    message never arrives) and the next message goes on a new session."""

    def refuse():
        raise RuntimeError("claim lost")

    with SmtpTransport(smtp.url, timeout=5) as transport:
        transport.send(message("message 0"), name="0", handed_off=lambda: None)
        with pytest.raises(RuntimeError, match="claim lost"):
            transport.send(message("message 1"), name="1", handed_off=refuse)
        transport.send(message("message 2"), name="2", handed_off=lambda: None)
        transport.send(message("message 3"), name="3", handed_off=lambda: None)
    assert bodies(smtp) == ["message 0", "message 2", "message 3"]
    assert smtp.peers[1] == smtp.peers[2] != smtp.peers[0]


@pytest.fixture
def impatient_smtp():
    """A real SMTP server that closes a session idle for 0.3 s (421, as servers do)."""
    yield from smtp_server(timeout=0.3)


def test_a_session_the_server_closed_meanwhile_is_replaced_before_anything_is_sent(
    impatient_smtp,
):
    handed = []
    with SmtpTransport(impatient_smtp.url, timeout=5) as transport:
        transport.send(message("message 0"), name="0", handed_off=lambda: handed.append(0))
        time.sleep(0.8)  # the server says 421 and closes the session
        transport.send(message("message 1"), name="1", handed_off=lambda: handed.append(1))
    assert handed == [0, 1]  # one hand-off each: the second one's came on the new session
    assert bodies(impatient_smtp) == ["message 0", "message 1"]
    assert len(set(impatient_smtp.peers)) == 2


def test_mail_directory_writes_one_file_per_job(tmp_path):
    directory = MailDirectory(tmp_path / "mail")
    for _ in range(2):  # a second try of the same job replaces the file
        directory.send(message("hello"), name="7-welcome-email", handed_off=lambda: None)
    assert [p.name for p in (tmp_path / "mail").iterdir()] == ["7-welcome-email.eml"]


def test_smtp_url_forms():
    assert SmtpTarget.from_url("smtps://user%40x:p%3Aw@mail.example.com") == SmtpTarget(
        "smtps", "mail.example.com", 465, "user@x", "p:w"
    )
    assert SmtpTarget.from_url("smtp+starttls://relay:2525").port == 2525
    assert SmtpTarget.from_url("smtp://localhost").port == 25


def test_redact_removes_addresses():
    assert redact("550 <jane.doe@example.com>: no such user") == "550 <<address>>: no such user"


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("SMTP_URL", "http://mail", "SMTP_URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL"),
        ("DOUBLE_OPT_IN", "sometimes", "true or false"),
        ("MAIL_FROM", "not an address", "MAIL_FROM"),
        ("UNSUBSCRIBE_MAILTO", "nobody", "UNSUBSCRIBE_MAILTO"),
        ("LIST_ID", "has spaces in it", "LIST_ID"),
        ("JOB_RETRY_INTERVALS", "10,soon", "comma-separated"),
        ("JOB_RETRY_INTERVALS", "0", "1 to 86400"),
        ("JOB_TIMEOUT", "5", "longer than SMTP_TIMEOUT"),
        ("CONFIRM_EMAILS_PER_DAY", "50", "between 1 and 10"),
    ],
)
def test_outbound_settings_are_validated_at_start(tmp_path, name, value, complaint):
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({"INSTANCE_PATH": str(tmp_path), name: value})


def test_outbound_settings_defaults_and_values(tmp_path):
    default = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    assert (default.double_opt_in, default.brand_postal_address, default.max_attempts) == (
        False,
        "MINI USA, 300 Chestnut Ridge Road, Woodcliff Lake, NJ 07677",
        5,
    )
    custom = Settings.from_env(
        {
            "INSTANCE_PATH": str(tmp_path),
            "DOUBLE_OPT_IN": "true",
            "JOB_RETRY_INTERVALS": "5,60",
            "MAIL_FROM": "MINI <news@mini.example>",
            "LIST_ID": "loop.mini.example",
        }
    )
    assert (custom.double_opt_in, custom.job_retry_intervals, custom.max_attempts) == (
        True,
        (5, 60),
        3,
    )
    assert (custom.mail_from, custom.list_id) == ("MINI <news@mini.example>", "loop.mini.example")
