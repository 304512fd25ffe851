"""Builders for test data."""

from __future__ import annotations

from leadsvc.webhook_targets import parse_networks

#: WEBHOOK_ALLOWED_NETWORKS in tests: the webhook receivers listen on 127.0.0.1.
TEST_WEBHOOK_NETWORKS = parse_networks("127.0.0.1/32")


def valid_signup(**overrides) -> dict:
    """A signup body the API accepts; override fields per test."""
    body = {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane.doe@example.com",
        "zip": "10001",
    }
    body.update(overrides)
    return body


DEALER_HEADER = (
    "code,name,street,city,state,zip,phone,lead_email,webhook_url,webhook_secret,latitude,longitude"
)


def dealer_line(
    code: str,
    zip5: str = "10001",
    *,
    state: str = "NY",
    latitude="",
    longitude="",
    webhook_url="",
    webhook_secret="",
    name: str | None = None,
) -> str:
    """One CSV line of the dealer import format."""
    return ",".join(
        [
            code,
            name or f"MINI {code}",
            "1 Main Street",
            "Town",
            state,
            zip5,
            "(800) 555-0100",
            f"leads-{code.lower()}@example.com",
            webhook_url,
            webhook_secret,
            str(latitude),
            str(longitude),
        ]
    )


def dealer_csv(*lines: str) -> str:
    return "\n".join([DEALER_HEADER, *lines]) + "\n"
