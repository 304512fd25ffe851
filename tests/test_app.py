"""The application class: Flask's own behaviour, with a cheaper `ensure_sync` for plain code."""

from __future__ import annotations

import functools
import inspect

import pytest
from flask import Flask

from leadsvc.app import LeadsvcFlask


def plain(value):
    return value


async def coroutine(value):
    return value


class Holder:
    def method(self, value):
        return value

    async def async_method(self, value):
        return value


def marked(value):
    return value


if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
    marked = inspect.markcoroutinefunction(marked)


def flask_answer(func):
    """What Flask's own `ensure_sync` gives for `func`: the function itself, or an error (no
    asgiref installed) or a wrapper for a coroutine function."""
    try:
        return Flask(__name__).ensure_sync(func)
    except RuntimeError as error:
        return error


@pytest.mark.parametrize(
    "func",
    [plain, coroutine, Holder().method, Holder().async_method, functools.partial(coroutine, 1),
     functools.partial(plain, 1), marked, len],
    ids=["plain", "coroutine", "method", "async-method", "async-partial", "partial", "marked",
         "builtin"],
)  # fmt: skip
def test_ensure_sync_passes_through_what_flask_passes_through(func):
    """A callable comes back unchanged exactly when Flask's own check returns it unchanged;
    everything else gets Flask's own answer (a wrapper, or its error without asgiref)."""
    app = LeadsvcFlask(__name__)
    expected = flask_answer(func)
    try:
        ours = app.ensure_sync(func)
    except RuntimeError as error:
        ours = error
    assert (ours is func) == (expected is func)
    if expected is not func:
        assert type(ours) is type(expected)


def test_the_app_is_a_leadsvc_flask(app):
    assert isinstance(app, LeadsvcFlask)


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
