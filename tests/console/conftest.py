"""Dealers, staff accounts and leads for the console's tests; signing in as a browser does."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from leadsvc.auth import users
from leadsvc.auth.audit import COMMAND_LINE
from leadsvc.auth.users import create_user
from leadsvc.consent.models import ConsentVerification
from leadsvc.dealers import routing
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from tests.factories import dealer_csv, dealer_line, valid_signup

PASSWORD = "correct horse battery staple"
ACCOUNTS = {
    "admin": ("admin@example.com", "admin", None),
    "compliance": ("compliance@example.com", "compliance", None),
    "ny": ("ny@example.com", "dealer", "NY1"),
    "la": ("la@example.com", "dealer", "LA1"),
}
_TOKEN = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


@pytest.fixture
def console_db(app):
    """A session for test setup and checks that holds no app context open between requests
    (an open one would make every request of the test client share one `flask.g`)."""

    @contextlib.contextmanager
    def opened():
        with app.app_context(), db.sessionmaker(app)() as session:
            yield session

    return opened


@pytest.fixture
def dealer_ids(console_db, monkeypatch) -> dict[str, int]:
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    with console_db() as session:
        report = import_dealers(
            session,
            dealer_csv(dealer_line("NY1", "10019"), dealer_line("LA1", "90036", state="CA")),
        )
        assert report.applied
        return dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())


@pytest.fixture
def accounts(console_db, dealer_ids) -> dict[str, str]:
    """An account of each role (and one per dealer); returns their emails by short name."""
    with console_db() as session:
        for email, role, dealer in ACCOUNTS.values():
            create_user(session, COMMAND_LINE, email, PASSWORD, role, dealer)
    return {name: email for name, (email, _, _) in ACCOUNTS.items()}


def sign_up(client, console_db, email: str, zip5: str = "10001") -> int:
    reply = client.post("/api/v1/signups", json=valid_signup(email=email, zip=zip5))
    assert reply.status_code == 202, reply.get_json()
    with console_db() as session:
        return session.scalar(sa.select(Lead.id).where(Lead.email_key == email.lower()))


def csrf_token(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1) or match.group(2)


def sign_in(client, email: str, password: str = PASSWORD):
    """Open the sign-in page and post it, as a browser does; returns the reply."""
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_token(page.text)},
    )


def post_form(client, path: str, data: dict, page: str | None = None):
    """Post a console form with the CSRF token of `page` (default: the same path)."""
    html = client.get(page or path).text
    return client.post(path, data={**data, "csrf_token": csrf_token(html)})


def finished_verifications(console_db, seconds: float = 30.0) -> list:
    """The ledger verifications once none is running any more (the console starts them as a
    job on a thread of the app's process): each run's (actor, ok), in order."""
    deadline = time.monotonic() + seconds
    while True:
        with console_db() as session:
            runs = session.execute(
                sa.select(ConsentVerification.actor, ConsentVerification.ok).order_by(
                    ConsentVerification.id
                )
            ).all()
        if all(ok is not None for _, ok in runs) or time.monotonic() > deadline:
            return [tuple(run) for run in runs]
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """Argon2id with its smallest cost: the tests sign in often; the algorithm is the same."""
    monkeypatch.setattr(
        users, "password_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
