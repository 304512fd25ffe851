"""One pooled PostgreSQL connection per thread, kept checked out in autocommit, for the few
single statements on the hot paths: the new-lead statement (`leadsvc.signups.new_lead`) and a
delivery's hand-off and success (`leadsvc.jobs.tasks`).

Each of those is one statement that is its own transaction. Through SQLAlchemy, the pool checkout
and return, the autocommit switch and back, the execution context and the result wrapping cost
more Python time than the round trip itself; here the statement goes to the driver on a cursor
the thread keeps. Each thread holds at most one such connection, from the engine's pool (pool
size 5 plus 5 overflow): a gunicorn worker's 4 threads keep 4, an rq worker keeps 1.
"""

from __future__ import annotations

import os
import threading

import psycopg
import sqlalchemy as sa


class _Held(threading.local):
    """This thread's connection for the hot statements: a pooled connection it keeps checked
    out, in autocommit, from one statement to the next; the pool it came from, and the
    process."""

    connection = None
    cursor = None
    pool = None
    pid = None


_held = _Held()
#: Connections a forked child found held by its parent's thread: never used or closed here (a
#: close would end the parent's session on the shared socket), and kept from being collected.
_inherited: list = []


def _held_cursor(engine: sa.Engine) -> psycopg.Cursor:
    """The cursor of the pooled connection this thread keeps for `engine`, in autocommit.

    A thread holds at most one: one for another engine, or for this engine's pool before
    `engine.dispose()` replaced it, is closed first. Each gunicorn thread thus keeps
    one of the engine's connections (pool_size 5 plus 5 overflow, against 4 threads); other
    statements share the rest. Raises psycopg's error if no connection can be had (the pool does
    not wrap a failed connect).
    """
    held = _held
    if held.connection is not None and held.pid != os.getpid():
        _inherited.append(held.connection)
        held.connection = None
    if held.connection is not None and held.pool is not engine.pool:
        _close(held)  # its pool was disposed, or belongs to another engine: keep nothing open
    if held.connection is None:
        pooled = engine.raw_connection()
        try:
            pooled.driver_connection.autocommit = True
        except psycopg.Error:
            _discard(pooled)
            raise
        held.connection, held.pool, held.pid = pooled, engine.pool, os.getpid()
        held.cursor = pooled.driver_connection.cursor()  # reused: one per statement cost ~5 us
    return held.cursor


def _discard(pooled) -> None:
    pooled.invalidate()  # closes the driver's connection; the pool forgets it
    pooled.close()


def _close(held: _Held) -> None:
    pooled, held.connection = held.connection, None
    _discard(pooled)


def _give_back(held: _Held) -> None:
    pooled, held.connection = held.connection, None
    try:
        pooled.driver_connection.autocommit = False
    except psycopg.Error:
        pooled.invalidate()
    pooled.close()


def run_held(engine: sa.Engine, sql: str, params: dict) -> list | int | None:
    """Runs `sql` (psycopg's named parameters) on this thread's held connection: its rows if it
    returns any, else the count of rows it changed; None if psycopg raised (no connection to be
    had, a dead one, or the statement failed: as a single autocommitted statement, it changed
    nothing). A connection that raised is not kept: a broken one is closed, any other goes back
    to the pool. The caller decides what None means (the statement's callers here run it again
    through SQLAlchemy, which reports the error as everywhere else)."""
    try:
        cursor = _held_cursor(engine)
    except psycopg.Error:
        return None
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else cursor.rowcount
    except psycopg.Error:
        if cursor.connection.broken:
            _close(_held)
        else:
            _give_back(_held)
        return None
