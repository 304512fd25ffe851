"""The Alembic migrations build the schema the models describe, on both databases, and reverse."""

import hashlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import leadsvc.models  # noqa: F401
from leadsvc.db import Base, create_db_engine, downgrade_schema, upgrade_schema

NOTICE = (
    "After we receive your information it may be used by MINI USA and your MINI Dealer "
    "to contact you."
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    else:
        engine = create_db_engine(request.getfixturevalue("fresh_postgres_url"))
    yield engine
    engine.dispose()


def _tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


# SQLite's reflection skips expression indexes (lower(subject)) with this warning; Alembic does
# not compare them on either database.
@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning"
)
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index"
)
def test_upgrade_builds_exactly_the_models_schema(empty_database):
    upgrade_schema(empty_database)
    assert _tables(empty_database) == set(Base.metadata.tables)
    with empty_database.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_consent_text_version_1_is_the_forms_notice(empty_database):
    upgrade_schema(empty_database)
    with empty_database.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT version, text, sha256, active FROM consent_texts")
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, NOTICE, hashlib.sha256(NOTICE.encode()).hexdigest(), True)
    ]


def test_downgrade_to_base_and_upgrade_again(empty_database):
    upgrade_schema(empty_database)
    downgrade_schema(empty_database, "base")
    assert _tables(empty_database) == set()
    upgrade_schema(empty_database)
    assert _tables(empty_database) == set(Base.metadata.tables)


def test_upgrade_is_a_no_op_at_head(empty_database):
    upgrade_schema(empty_database)
    upgrade_schema(empty_database)
    with empty_database.connect() as connection:
        head = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert head == "0018"
