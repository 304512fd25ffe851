"""Email validation (email-validator) and a suggestion for likely typos of common providers."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

from email_validator import (
    SPECIAL_USE_DOMAIN_NAMES,
    EmailNotValidError,
    caching_resolver,
    validate_email,
)

from leadsvc.input_bounds import any_case
from leadsvc.settings import MAX_DNS_TIMEOUT_SECONDS

#: How an address is shown in the OpenAPI document: an email address, at most 254 characters,
#: not at a special-use domain (RFC 6761: `.test`, `.local`, ...), which email-validator refuses.
EMAIL_SHAPE = {
    "format": "email",
    "maxLength": 254,
    "not": {
        "pattern": "[@.](?:"
        + "|".join(any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
        + ")\\.?$"
    },
}

#: Common mailbox providers in the US. A domain one typo away from one of these (and not itself
#: a known provider) gets a suggestion; the address is still accepted as typed.
KNOWN_PROVIDERS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "ymail.com",
        "rocketmail.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "aim.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "comcast.net",
        "att.net",
        "sbcglobal.net",
        "bellsouth.net",
        "verizon.net",
        "charter.net",
        "cox.net",
        "earthlink.net",
        "optonline.net",
        "frontier.com",
        "protonmail.com",
        "proton.me",
        "mail.com",
        "gmx.com",
        "gmx.net",
        "zoho.com",
        "yandex.com",
        "fastmail.com",
        "hey.com",
        "yahoo.co.uk",
        "hotmail.co.uk",
    }
)
#: Providers worth suggesting (the big ones); a typo must land near one of these.
SUGGESTED_PROVIDERS = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "aol.com",
    "icloud.com",
    "comcast.net",
    "att.net",
    "sbcglobal.net",
    "verizon.net",
    "live.com",
    "msn.com",
)


class InvalidEmail(ValueError):
    """The address is not one we can send to."""


@dataclass(frozen=True, slots=True)
class CheckedEmail:
    #: As email-validator normalised it: domain lower-cased, IDNA in Unicode form.
    normalized: str
    #: The identity of the person: `normalized` lower-cased (dots and +tags kept).
    key: str
    #: As typed, less surrounding spaces.
    as_typed: str
    #: A corrected address when the domain looks like a typo of a common provider.
    suggestion: str | None


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, transpositions."""
    previous_previous: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous_previous[j - 2] + 1)
        previous_previous, previous = previous, current
    return previous[-1]


@functools.lru_cache(maxsize=4096)
def suggest_domain(domain: str) -> str | None:
    """The common provider `domain` is most likely a typo of, or None."""
    domain = domain.lower()
    if domain in KNOWN_PROVIDERS:
        return None
    best, best_distance = None, 3
    for provider in SUGGESTED_PROVIDERS:
        allowed = 2 if len(provider) >= 9 else 1
        if abs(len(domain) - len(provider)) > allowed:
            continue  # the distance is at least the length difference: no need to compute it
        distance = _edit_distance(domain, provider)
        if distance <= allowed and distance < best_distance:
            best, best_distance = provider, distance
    return best


class EmailChecker:
    """Validates addresses; checks DNS deliverability only when configured, with a cache.

    A DNS check never holds a signup for longer than `MAX_DNS_TIMEOUT_SECONDS`, whatever
    `dns_timeout` says; a timeout or unreachable name servers let the address through.
    """

    def __init__(
        self, check_deliverability: bool = False, dns_timeout: float = MAX_DNS_TIMEOUT_SECONDS
    ):
        self.check_deliverability = check_deliverability
        self.dns_timeout = min(float(dns_timeout), MAX_DNS_TIMEOUT_SECONDS)
        self._resolver = None
        self._lock = threading.Lock()

    def _dns_resolver(self):
        if self._resolver is None:
            with self._lock:
                if self._resolver is None:
                    resolver = caching_resolver(timeout=self.dns_timeout)
                    # `lifetime` bounds the whole query; bound each server's try the same way.
                    resolver.timeout = min(resolver.timeout, self.dns_timeout)
                    self._resolver = resolver
        return self._resolver

    def check(self, raw: str) -> CheckedEmail:
        typed = raw.strip()
        try:
            result = validate_email(
                typed,
                check_deliverability=self.check_deliverability,
                dns_resolver=self._dns_resolver() if self.check_deliverability else None,
            )
        except EmailNotValidError as error:
            raise InvalidEmail(str(error)) from None
        normalized = result.normalized
        if len(normalized) > 254:
            raise InvalidEmail("the address is too long")
        local, _, domain = normalized.rpartition("@")
        better = suggest_domain(domain)
        return CheckedEmail(
            normalized=normalized,
            key=normalized.lower(),
            as_typed=typed,
            suggestion=f"{local}@{better}" if better else None,
        )
