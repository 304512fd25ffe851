"""Builders for test data."""

from __future__ import annotations


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
