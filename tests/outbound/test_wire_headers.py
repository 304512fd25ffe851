"""On the wire, List-Unsubscribe stays plain: mail providers read its URLs without decoding."""

from leadsvc.outbound.mail import WIRE_SMTP, WIRE_SMTPUTF8
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
