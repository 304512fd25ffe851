"""Database plumbing: the declarative base, the engine per app, request-scoped sessions, migrations.

Sessions are opened and closed by the request (`db.session`, closed at teardown) or by the job or
command that needs one (`with db.sessionmaker(app)() as session:`); models never open them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

#: Integer primary keys: BIGINT identity on PostgreSQL, the rowid alias on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The repository's Alembic environment (pyproject.toml's [tool.alembic] points at it too).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_PATH = PROJECT_ROOT / "sql"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC; used as column default (a callable, never a value)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware time as the same instant in UTC (PostgreSQL takes offsets up to 15:59 only, ISO
    8601 up to 23:59); one beyond the calendar's ends (year 1 or 9999) as its first or last
    instant, which no stored time can pass."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


class UTCDateTime(sa.TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database returns."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use leadsvc.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(url: str) -> sa.Engine:
    """An engine for `url`; statement parameters never appear in error messages or logs."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 5}
        )
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return sa.create_engine(
        url,
        hide_parameters=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
        connect_args={"connect_timeout": 3, "application_name": "leadsvc"},
    )


class Database:
    """Holds each app's engine and session factory in `app.extensions`."""

    key = "leadsvc.db"

    def init_app(self, app: Flask, url: str) -> None:
        engine = create_db_engine(url)
        app.extensions[self.key] = (engine, sessionmaker(engine, expire_on_commit=False))
        app.teardown_appcontext(self._close_session)

    def engine(self, app: Flask | None = None) -> sa.Engine:
        return (app or current_app).extensions[self.key][0]

    def sessionmaker(self, app: Flask | None = None) -> sessionmaker[Session]:
        return (app or current_app).extensions[self.key][1]

    @property
    def session(self) -> Session:
        """The current request's session, opened on first use and closed at teardown."""
        if "db_session" not in g:
            g.db_session = self.sessionmaker()()
        return g.db_session

    @staticmethod
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def alembic_config(connection: sa.Connection):
    """An Alembic config for the repository's `sql/` scripts, bound to an open connection."""
    from alembic.config import Config

    config = Config(toml_file=str(PROJECT_ROOT / "pyproject.toml"))
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: sa.Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` (the `release` step and the embedded start)."""
    if not MIGRATIONS_PATH.is_dir():
        raise RuntimeError(f"migration scripts not found at {MIGRATIONS_PATH}")
    # Alembic narrates each step at INFO (about fifteen lines on a fresh database); the start-up
    # summary says what matters, and its warnings and errors still show.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(max(level, logging.WARNING))
    try:
        from alembic import command

        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        alembic_log.setLevel(level)


def downgrade_schema(engine: sa.Engine, revision: str) -> None:
    """Run the Alembic migrations down to `revision` (tests prove every step reverses)."""
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
