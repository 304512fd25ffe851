"""Email checking: normalisation, identity key, typo suggestions; DNS optional and bounded.

Unit tests without a database or a network: DNS answers come from a stub resolver.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.resolver
import pytest

from leadsvc.leads.email_address import (
    CheckedEmail,
    EmailChecker,
    InvalidEmail,
    _edit_distance,
    suggest_domain,
)
from leadsvc.settings import MAX_DNS_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("typed", "normalized", "key"),
    [
        ("jane.doe@example.com", "jane.doe@example.com", "jane.doe@example.com"),
        ("Jane.Doe@Example.COM", "Jane.Doe@example.com", "jane.doe@example.com"),
        ("jane.doe+mini@example.com", "jane.doe+mini@example.com", "jane.doe+mini@example.com"),
        ("用户@例子.广告", "用户@例子.广告", "用户@例子.广告"),
        ("jane@bücher.de", "jane@bücher.de", "jane@bücher.de"),
        ("JANE@BÜCHER.DE", "JANE@bücher.de", "jane@bücher.de"),
        ("jane@xn--bcher-kva.de", "jane@bücher.de", "jane@bücher.de"),
        ("josé@example.com", "josé@example.com", "josé@example.com"),
    ],
)
def test_address_is_normalised_and_keyed_case_insensitively(typed, normalized, key):
    checked = EmailChecker().check(typed)
    assert checked == CheckedEmail(normalized=normalized, key=key, as_typed=typed, suggestion=None)


def test_as_typed_keeps_the_letters_but_not_the_surrounding_spaces():
    checked = EmailChecker().check("  Jane.Doe@Example.COM \t")
    assert checked.as_typed == "Jane.Doe@Example.COM"
    assert checked.normalized == "Jane.Doe@example.com"


def test_decomposed_unicode_is_normalised_to_the_composed_form():
    decomposed = "jose\u0301@example.com"  # e + combining acute accent
    assert EmailChecker().check(decomposed).normalized == "jos\u00e9@example.com"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@localhost",
        "jane..doe@example.com",
        ".jane@example.com",
        "jane doe@example.com",
        "jane@example.com.",
        "jane@-example.com",
        "jane@exa mple.com",
        "Jane <jane@example.com>",
        '"jane doe"@example.com',
        "jane@[127.0.0.1]",
        "jane@example.test",
        "jane@@example.com",
        "jane@example..com",
        "jane@" + "a" * 64 + ".com",  # a DNS label is at most 63 characters
        "jane@" + ".".join(["d" * 60] * 5) + ".com",  # longer than 254 characters
    ],
)
def test_malformed_address_is_refused(typed):
    with pytest.raises(InvalidEmail):
        EmailChecker().check(typed)


@pytest.mark.parametrize(
    ("domain", "suggestion"),
    [
        ("gmial.com", "gmail.com"),
        ("gmai.com", "gmail.com"),
        ("gamil.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("gmail.co", "gmail.com"),
        ("GMIAL.COM", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("hotmal.com", "hotmail.com"),
        ("yaho.com", "yahoo.com"),
        ("yahooo.com", "yahoo.com"),
        ("yahoo.cm", "yahoo.com"),
        ("outlok.com", "outlook.com"),
        ("icloud.co", "icloud.com"),
        ("comcast.ent", "comcast.net"),
        ("aol.con", "aol.com"),
    ],
)
def test_likely_provider_typo_gets_a_suggestion(domain, suggestion):
    assert suggest_domain(domain) == suggestion


@pytest.mark.parametrize(
    "domain",
    [
        # Known providers, however close they are to another one.
        "mail.com",
        "gmx.com",
        "gmx.net",
        "yahoo.com",
        "gmail.com",
        "hotmail.com",
        "me.com",
        "mac.com",
        "aim.com",
        "aol.com",
        "live.com",
        "msn.com",
        "ymail.com",
        "proton.me",
        # Ordinary domains nowhere near a big provider.
        "example.com",
        "bmwusa.com",
        "miniusa.com",
        "bücher.de",
        "例子.广告",
        "company.org",
    ],
)
def test_known_provider_or_unrelated_domain_gets_no_suggestion(domain):
    assert suggest_domain(domain) is None


def test_suggestion_keeps_the_mailbox_and_the_address_itself_is_unchanged():
    checked = EmailChecker().check("Jane.Doe@gmial.com")
    assert checked.suggestion == "Jane.Doe@gmail.com"
    assert checked.normalized == "Jane.Doe@gmial.com"
    assert checked.key == "jane.doe@gmial.com"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("gmail.com", "gmail.com", 0),
        ("gmial.com", "gmail.com", 1),  # a transposition counts once
        ("gmai.com", "gmail.com", 1),
        ("gmaill.com", "gmail.com", 1),
        ("gnail.com", "gmail.com", 1),
        ("hotmial.con", "hotmail.com", 2),
        ("", "abc", 3),
        ("abc", "", 3),
    ],
)
def test_edit_distance_counts_insertions_deletions_substitutions_and_transpositions(a, b, distance):
    assert _edit_distance(a, b) == distance
    assert _edit_distance(b, a) == distance


# --- DNS deliverability: off by default; when on, bounded in time and answered by a stub here. ---


@dataclass
class _Mx:
    preference: int
    exchange: str


class StubResolver:
    """Answers `resolve(domain, rdtype)` from a table; records what was asked."""

    def __init__(self, answers: dict[tuple[str, str], object]):
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def resolve(self, domain, rdtype, *args, **kwargs):
        self.asked.append((str(domain), rdtype))
        answer = self.answers.get((str(domain), rdtype), dns.resolver.NoAnswer())
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _checker_with(resolver: StubResolver) -> EmailChecker:
    checker = EmailChecker(check_deliverability=True)
    checker._resolver = resolver
    return checker


def test_deliverability_is_not_checked_by_default(monkeypatch):
    def no_dns(*args, **kwargs):
        raise AssertionError("DNS was queried with deliverability checks off")

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", no_dns)
    checker = EmailChecker()
    checked = checker.check("jane@no-such-domain-zz9.com")
    assert checked.normalized == "jane@no-such-domain-zz9.com"
    assert checker._resolver is None


def test_deliverable_domain_with_mx_record_is_accepted():
    resolver = StubResolver({("example.com", "MX"): [_Mx(10, "mx.example.com.")]})
    checked = _checker_with(resolver).check("jane@example.com")
    assert checked.normalized == "jane@example.com"
    assert resolver.asked == [("example.com", "MX")]


def test_internationalised_domain_is_looked_up_in_its_ascii_form():
    resolver = StubResolver({("xn--bcher-kva.de", "MX"): [_Mx(10, "mx.xn--bcher-kva.de.")]})
    assert _checker_with(resolver).check("jane@bücher.de").normalized == "jane@bücher.de"
    assert resolver.asked == [("xn--bcher-kva.de", "MX")]


def test_domain_that_does_not_exist_is_refused_when_deliverability_is_checked():
    resolver = StubResolver({("no-such-domain-zz9.com", "MX"): dns.resolver.NXDOMAIN()})
    with pytest.raises(InvalidEmail):
        _checker_with(resolver).check("jane@no-such-domain-zz9.com")


def test_domain_with_null_mx_is_refused():
    resolver = StubResolver({("nomail.example.com", "MX"): [_Mx(0, ".")]})
    with pytest.raises(InvalidEmail):
        _checker_with(resolver).check("jane@nomail.example.com")


@pytest.mark.parametrize("failure", [dns.exception.Timeout(), dns.resolver.NoNameservers()])
def test_dns_timeout_or_outage_does_not_refuse_the_address(failure):
    resolver = StubResolver({("example.com", "MX"): failure})
    assert _checker_with(resolver).check("jane@example.com").normalized == "jane@example.com"
    assert resolver.asked == [("example.com", "MX")]


def test_dns_resolver_gives_up_within_three_seconds():
    resolver = EmailChecker(check_deliverability=True, dns_timeout=3)._dns_resolver()
    assert resolver.lifetime <= 3
    assert resolver.timeout <= 3


@pytest.mark.parametrize("configured", [1, 3, 10, 60])
def test_dns_timeout_is_capped_at_the_maximum_whatever_is_configured(configured):
    resolver = EmailChecker(check_deliverability=True, dns_timeout=configured)._dns_resolver()
    assert resolver.lifetime == min(configured, MAX_DNS_TIMEOUT_SECONDS)
    assert resolver.timeout <= min(configured, MAX_DNS_TIMEOUT_SECONDS)


def test_dns_resolver_is_built_once_and_caches_answers():
    checker = EmailChecker(check_deliverability=True)
    resolver = checker._dns_resolver()
    assert checker._dns_resolver() is resolver
    assert resolver.cache is not None
