"""The application's request plumbing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("leave", ["transaction", "object", "nothing"])
def test_the_request_session_gives_its_connection_back_at_teardown(app, leave):
    """Whatever a request leaves in its session (a transaction, loaded objects, or nothing at
    all), nothing stays checked out of the pool after it."""
    import sqlalchemy as sa

    from leadsvc.consent.models import ConsentText
    from leadsvc.extensions import db

    def view():
        if leave == "transaction":
            db.session.execute(sa.text("SELECT 1"))
        elif leave == "object":
            db.session.get(ConsentText, 1)
            db.session.commit()
        else:
            db.session.get_bind()
        return str(db.session.in_transaction())

    app.add_url_rule("/_session_probe", "session_probe", view)
    engine = db.engine(app)
    engine.dispose()
    reply = app.test_client().get("/_session_probe")
    assert reply.status_code == 200
    assert reply.get_data(as_text=True) == str(leave == "transaction")
    assert engine.pool.checkedout() == 0


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/api/v1/signups", {"POST", "OPTIONS"}), ("/signup", {"POST", "OPTIONS"})],
)
def test_a_method_not_allowed_says_which_are(client, path, allowed):
    """RFC 9110: a 405 carries Allow, on the API and on the pages."""
    reply = client.delete(path)
    assert reply.status_code == 405
    assert {method.strip() for method in reply.headers["Allow"].split(",")} >= allowed
