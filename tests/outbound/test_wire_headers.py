"""On the wire, List-Unsubscribe stays plain: mail providers read its URLs without decoding; and
emails built with the kept header classes are the standard library's, byte for byte."""

from email import policy
from email.headerregistry import Address, AddressHeader, UnstructuredHeader
from email.message import EmailMessage

from leadsvc.outbound.mail import (
    HEADER_CLASSES,
    WIRE_SMTP,
    WIRE_SMTPUTF8,
    HeaderClasses,
    new_message,
)
from leadsvc.outbound.messages import person_email


def test_list_unsubscribe_is_not_encoded_or_folded(app):
    settings = app.config["LEADSVC_SETTINGS"]
    with app.app_context():
        message = person_email(settings, kind="welcome_email", outbox_id=7, lead_id=42,
                               to="jane.doe@example.com", dealer_name=None)  # fmt: skip
    for wire in (WIRE_SMTP, WIRE_SMTPUTF8):
        headers = message.as_bytes(policy=wire).split(b"\r\n\r\n", 1)[0].decode()
        [line] = [h for h in headers.split("\r\n") if h.startswith("List-Unsubscribe:")]
        assert "=?" not in line
        assert "<mailto:" in line and "/unsubscribe/" in line
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers


def _compose(message: EmailMessage) -> EmailMessage:
    message["From"] = '"MINI USA" <news@example.com>'
    message["To"] = Address(display_name="Zoë's MINI, Inc.", addr_spec="leads@example.com")
    message["Subject"] = "Welcome to MINI USA Stay In the Loop — naïve café"
    message["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    message["List-Unsubscribe"] = "<https://example.com/unsubscribe/abc>, <mailto:u@example.com>"
    message.set_content("plain ünïcode text\n.leading dot\n")
    message.add_alternative("<p>html</p>", subtype="html")
    message.set_boundary("fixed-boundary")
    return message


def test_emails_built_with_kept_headers_match_the_standard_ones_byte_for_byte():
    standard = _compose(EmailMessage(policy=policy.default))
    first, again = _compose(new_message()), _compose(new_message())  # again: from kept headers
    assert first.policy.header_factory is HEADER_CLASSES
    assert again["Subject"] is first["Subject"] and again["From"] is first["From"]
    for wire in (WIRE_SMTP, WIRE_SMTPUTF8, policy.SMTP):
        assert first.as_bytes(policy=wire) == standard.as_bytes(policy=wire)
        assert again.as_bytes(policy=wire) == standard.as_bytes(policy=wire)
    for name in ("From", "To", "Subject", "Date", "Content-Type"):
        assert type(first[name]).__mro__[1:] == type(standard[name]).__mro__[1:]


def test_header_classes_are_made_once_per_name_and_follow_the_registry():
    classes = HeaderClasses()
    assert classes["Subject"] is classes["subject"] is classes["SUBJECT"]
    assert classes["To"] is not classes["Subject"]
    assert issubclass(classes["To"], AddressHeader)
    classes.map_to_type("X-Lead", AddressHeader)
    assert issubclass(classes["x-lead"], AddressHeader)
    classes.map_to_type("To", UnstructuredHeader)
    assert not issubclass(classes["To"], AddressHeader)


def test_kept_headers_are_bounded_and_the_least_recently_used_goes_first():
    classes = HeaderClasses()
    classes.KEPT = 3
    subject = classes("Subject", "one")
    classes("Subject", "two")
    classes("Subject", "three")
    assert classes("Subject", "one") is subject  # used again: now the most recent
    classes("Subject", "four")  # "two" goes
    assert classes("Subject", "one") is subject
    assert len(classes._headers) == 3 and ("Subject", "two") not in classes._headers
    classes.map_to_type("Subject", UnstructuredHeader)
    assert classes("Subject", "one") is not subject
