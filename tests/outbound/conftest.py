"""Fixtures of the outbound tests: an app that mails a real SMTP server, a dealer."""

import pytest

from leadsvc.dealers import routing
from leadsvc.extensions import db
from tests.jobs.support import FAST, add_dealer


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


@pytest.fixture
def mail_app(make_app, smtp):
    """An app whose mail goes to the `smtp` server; no Redis (tests drain the outbox in-process)."""
    return make_app(smtp_url=smtp.url, **FAST)


@pytest.fixture
def mail_client(mail_app):
    return mail_app.test_client()


@pytest.fixture
def mail_session(mail_app):
    with db.sessionmaker(mail_app)() as session:
        yield session


@pytest.fixture
def dealer(mail_session):
    return add_dealer(mail_session)
