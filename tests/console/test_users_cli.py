"""`leadsvc users`: create (password on stdin), list, disable, reset-password; all audited."""

from __future__ import annotations

import sqlalchemy as sa

from leadsvc.auth.models import StaffAudit
from tests.console.conftest import sign_in


def test_users_commands(app, client, console_db, dealer_ids):
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["users", "create", "Boss@Example.com", "--role", "admin"],
        input="a long enough password\n",
    )
    assert made.exit_code == 0, made.output
    assert "created admin account boss@example.com" in made.output
    short = runner.invoke(
        args=["users", "create", "d@example.com", "--role", "dealer", "--dealer", "NY1"],
        input="short\n",
    )
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    no_dealer = runner.invoke(
        args=["users", "create", "d@example.com", "--role", "dealer"], input="long password 123\n"
    )
    assert no_dealer.exit_code == 2 and "needs its dealer" in no_dealer.output
    listed = runner.invoke(args=["users", "list"])
    assert "boss@example.com" in listed.output and "1 accounts" in listed.output
    assert sign_in(client, "boss@example.com", "a long enough password").status_code == 303
    assert runner.invoke(args=["users", "disable", "boss@example.com"]).exit_code == 0
    assert client.get("/console/overview").status_code == 303  # the open session ended
    assert sign_in(client, "boss@example.com", "a long enough password").status_code == 422
    with console_db() as session:
        actions = list(session.scalars(sa.select(StaffAudit.action).order_by(StaffAudit.id)))
    assert actions == ["user.create", "user.disable"]
