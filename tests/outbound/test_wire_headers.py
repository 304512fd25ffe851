"""On the wire, List-Unsubscribe stays plain: mail providers read its URLs without decoding."""

from email.headerregistry import Address
from email.message import EmailMessage

from leadsvc.outbound.mail import WIRE_SMTP, WIRE_SMTPUTF8
from leadsvc.outbound.messages import person_email


def test_list_unsubscribe_is_not_encoded_or_folded(app):
    settings = app.config["LEADSVC_SETTINGS"]
    with app.app_context():
        message = person_email(
            settings,
            kind="welcome_email",
            outbox_id=7,
            lead_id=42,
            to="jane.doe@example.com",
            dealer_name=None,
        )
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
