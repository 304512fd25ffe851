"""API keys: created and shown once, stored as a hash, checked in constant time, revoked at once;
401 with WWW-Authenticate for a missing or bad key, 403 for a key of another role."""

import hashlib
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from leadsvc.auth import keys as auth_keys
from leadsvc.auth.keys import create_key, revoke_key
from leadsvc.auth.models import ApiKey
from leadsvc.db import utcnow
from leadsvc.dealers.directory import import_dealers
from tests.factories import dealer_csv, dealer_line

KEY = re.compile(r"^(lsk_[A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
FEED = "/api/v1/dealer/leads"


@pytest.fixture
def dealers(session) -> None:
    csv_text = dealer_csv(dealer_line("NY1", "10019"), dealer_line("LA1", "90036", state="CA"))
    report = import_dealers(session, csv_text)
    assert report.applied


def keyed_operations(app) -> list[tuple[str, str, str]]:
    """(method, URL, "dealer" or "admin") for every operation of the keyed APIs, ids filled in."""
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/dealer/", "/api/v1/admin/")):
            continue
        url = re.sub(r"<int[^>]*:\w+>", "1", rule.rule)
        url = re.sub(r"<(?:string:)?\w+>", "NY1", url)
        role = "dealer" if rule.rule.startswith("/api/v1/dealer/") else "admin"
        operations += [(method, url, role) for method in rule.methods - {"HEAD", "OPTIONS"}]
    assert len(operations) == 13  # feed, lead, ack, answer; dealers, keys, follow-up, holidays
    return sorted(operations)


def other_end(text: str) -> str:
    """`text` with its last character changed."""
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_cli_prints_the_key_once_lists_prefixes_and_the_database_holds_no_key(
    app, client, session, dealers
):
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["keys", "create", "--role", "dealer", "--dealer", "ny1", "--name", "Acme CRM"]
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    prefix, secret = KEY.match(key).groups()
    assert made.stdout == key + "\n"  # the key, alone on stdout (for `> file`)
    assert prefix in made.stderr and key not in made.stderr and secret not in made.stderr
    admin = runner.invoke(args=["keys", "create", "--role", "admin"]).stdout.strip()
    compliance = runner.invoke(args=["keys", "create", "--role", "compliance"]).stdout.strip()
    assert KEY.match(admin) and KEY.match(compliance) and len({key, admin, compliance}) == 3

    listing = runner.invoke(args=["keys", "list"])
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    assert lines[-1] == "3 keys"
    ours = next(line for line in lines if line.startswith(prefix))
    assert ours.split()[:4] == [prefix, "dealer", "NY1", "active"]
    assert "never used" in ours and ours.endswith("Acme CRM")
    assert {line.split()[1] for line in lines[:-1]} == {"dealer", "admin", "compliance"}
    for shown in (key, secret, admin, compliance, KEY.match(admin)[2]):
        assert shown not in listing.output

    # No column of any key row holds a key or its secret part in clear.
    secrets = [key, secret, admin, KEY.match(admin)[2], compliance, KEY.match(compliance)[2]]
    rows = session.execute(sa.text("SELECT * FROM api_keys")).all()
    assert len(rows) == 3
    for row in rows:
        for value in row:
            assert not any(s in str(value) for s in secrets), value
    stored = session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix))
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (stored.role, stored.name, stored.last_used_at) == ("dealer", "Acme CRM", None)

    # The key works, and its use is recorded.
    assert client.get(FEED, headers=bearer(key)).status_code == 200
    session.expire_all()
    used = session.scalar(sa.select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))
    assert used is not None and abs(utcnow() - used) < timedelta(minutes=1)
    assert "never used" not in next(
        line
        for line in runner.invoke(args=["keys", "list"]).stdout.splitlines()
        if line.startswith(prefix)
    )

    # Revoked: the very next request fails; the other keys still work.
    revoked = runner.invoke(args=["keys", "revoke", prefix])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"{prefix} revoked"
    reply = client.get(FEED, headers=bearer(key))
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/admin/dealers", headers=bearer(admin)).status_code == 200
    assert f"{prefix}  dealer" in runner.invoke(args=["keys", "list"]).stdout
    assert "revoked" in next(
        line
        for line in runner.invoke(args=["keys", "list"]).stdout.splitlines()
        if line.startswith(prefix)
    )
    unknown = runner.invoke(args=["keys", "revoke", "lsk_nope0000"])
    assert unknown.exit_code != 0 and "no key with prefix lsk_nope0000" in unknown.output


REFUSED = [
    (["--role", "dealer"], "a dealer key needs --dealer CODE"),
    (["--role", "dealer", "--dealer", "nope"], "no dealer with code NOPE"),
    (["--role", "compliance", "--dealer", "NY1"], "only dealer keys belong to a dealer"),
    (["--role", "root"], "'root' is not one of"),
    ([], "Missing option '--role'"),
]


def test_cli_refuses_a_key_it_cannot_make_clearly(app, session, dealers):
    for args, message in REFUSED:
        result = app.test_cli_runner().invoke(args=["keys", "create", *args])
        assert result.exit_code == 2, args  # a usage error, with its reason
        assert message in result.stderr and "Error" in result.stderr, result.output
        assert result.stdout == ""  # no key printed
    assert session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 0


def test_a_missing_or_bad_key_is_401_and_a_key_of_another_role_403_everywhere(
    app, client, session, dealers
):
    dealer_row, dealer_key = create_key(session, "dealer", "NY1")
    admin_key = create_key(session, "admin")[1]
    compliance_key = create_key(session, "compliance")[1]
    other_prefix = create_key(session, "dealer", "LA1")[0].prefix
    revoked = create_key(session, "admin")
    revoke_key(session, revoked[0].prefix)
    prefix, secret = KEY.match(dealer_key).groups()
    bad_headers = {
        "no header": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "scheme and spaces": {"Authorization": "Bearer    "},
        "garbage": bearer("garbage"),
        "key-shaped, unknown": bearer("lsk_abcdefgh_" + "x" * 43),
        "right prefix, wrong secret": bearer(f"{prefix}_{other_end(secret)}"),
        "another key's prefix": bearer(f"{other_prefix}_{secret}"),
        "secret without prefix": bearer(secret),
        "prefix only": bearer(prefix),
        "truncated": bearer(dealer_key[:-1]),
        "extended": bearer(dealer_key + "x"),
        "very long": bearer(dealer_key + "x" * 5000),
        "other scheme": {"Authorization": f"Basic {dealer_key}"},
        "token scheme": {"Authorization": f"Token {dealer_key}"},
        "no scheme": {"Authorization": dealer_key},
        "revoked": bearer(revoked[1]),
        "in the query string instead": {},
    }
    for method, url, role in keyed_operations(app):
        for what, headers in bad_headers.items():
            target = url + (f"?access_token={dealer_key}" if "query" in what else "")
            reply = client.open(target, method=method, headers=headers, json={})
            where = f"{method} {url} with {what}"
            assert reply.status_code == 401, where
            assert reply.headers["WWW-Authenticate"] == 'Bearer realm="leadsvc"', where
            assert reply.get_json()["code"] == 401, where
        wrong_roles = ("admin", "compliance") if role == "dealer" else ("dealer", "compliance")
        for wrong in wrong_roles:
            key = {"admin": admin_key, "compliance": compliance_key, "dealer": dealer_key}[wrong]
            reply = client.open(url, method=method, headers=bearer(key), json={})
            assert reply.status_code == 403, f"{method} {url} with a {wrong} key"
            assert reply.get_json()["message"] == "This API key may not use this endpoint."
            assert "WWW-Authenticate" not in reply.headers
    # The scheme name is case-insensitive (RFC 7235); the right key of the right role passes.
    assert client.get(FEED, headers={"Authorization": f"bearer {dealer_key}"}).status_code == 200
    assert client.get("/api/v1/admin/dealers", headers=bearer(admin_key)).status_code == 200
    session.expire_all()
    assert session.get(ApiKey, dealer_row.id).last_used_at is not None


def test_keys_are_compared_in_constant_time(monkeypatch, client, session, dealers):
    row, key = create_key(session, "dealer", "NY1")
    calls = []
    real = auth_keys.hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_keys.hmac, "compare_digest", recording)
    assert client.get(FEED, headers=bearer(key)).status_code == 200
    assert calls == [(row.key_hash, hashlib.sha256(key.encode()).hexdigest())]
    calls.clear()
    wrong = other_end(key)
    assert client.get(FEED, headers=bearer(wrong)).status_code == 401
    assert calls == [(row.key_hash, hashlib.sha256(wrong.encode()).hexdigest())]
    calls.clear()
    # An unknown prefix is compared too, so its timing does not tell it from a known one.
    assert client.get(FEED, headers=bearer("lsk_unknown0_" + "x" * 43)).status_code == 401
    assert len(calls) == 1
    # The comparison decides: with it failing, even the right key is refused.
    monkeypatch.setattr(auth_keys.hmac, "compare_digest", lambda a, b: False)
    assert client.get(FEED, headers=bearer(key)).status_code == 401


def test_a_deactivated_dealers_key_is_refused_until_the_dealer_is_active_again(
    client, session, dealers
):
    """Deactivating a dealer (closed, terminated) cuts off its API access at once, as revoking
    its key would; other dealers' keys and admin keys are untouched."""
    from leadsvc.dealers.directory import deactivate_dealer
    from leadsvc.dealers.models import Dealer

    ny_key = create_key(session, "dealer", "NY1")[1]
    la_key = create_key(session, "dealer", "LA1")[1]
    admin_key = create_key(session, "admin")[1]
    assert client.get(FEED, headers=bearer(ny_key)).status_code == 200
    deactivate_dealer(session, "NY1")
    reply = client.get(FEED, headers=bearer(ny_key))
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="leadsvc"'
    assert client.get(FEED, headers=bearer(la_key)).status_code == 200
    assert client.get("/api/v1/admin/dealers", headers=bearer(admin_key)).status_code == 200
    session.execute(sa.update(Dealer).where(Dealer.code == "NY1").values(active=True))
    session.commit()
    assert client.get(FEED, headers=bearer(ny_key)).status_code == 200
