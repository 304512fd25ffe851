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


def test_emails_built_with_kept_header_classes_match_the_standard_ones_byte_for_byte():
    kept = _compose(new_message())
    standard = _compose(EmailMessage(policy=policy.default))
    assert kept.policy.header_factory is HEADER_CLASSES
    for wire in (WIRE_SMTP, WIRE_SMTPUTF8, policy.SMTP):
        assert kept.as_bytes(policy=wire) == standard.as_bytes(policy=wire)
    for name in ("From", "To", "Subject", "Date", "Content-Type"):
        assert type(kept[name]).__mro__[1:] == type(standard[name]).__mro__[1:]


def test_header_classes_are_made_once_per_name_and_follow_the_registry():
    classes = HeaderClasses()
    assert classes["Subject"] is classes["subject"] is classes["SUBJECT"]
    assert classes["To"] is not classes["Subject"]
    assert issubclass(classes["To"], AddressHeader)
    classes.map_to_type("X-Lead", AddressHeader)
    assert issubclass(classes["x-lead"], AddressHeader)
    classes.map_to_type("To", UnstructuredHeader)
    assert not issubclass(classes["To"], AddressHeader)
