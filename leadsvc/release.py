"""The release step (Procfile `release: leadsvc db upgrade`): migrate, then load reference data.

The embedded default (`leadsvc serve` with no settings) runs it too before serving, and loads the
demo dealer directory from `config/` when the directory is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask

from leadsvc.db import PROJECT_ROOT, upgrade_schema
from leadsvc.extensions import db
from leadsvc.geo.directory import ensure_zip_directory

DEMO_DEALERS = PROJECT_ROOT / "config" / "dealers.demo.csv"


@dataclass(frozen=True)
class ReleaseReport:
    zip_codes: int
    dealers: int
    demo_dealers_loaded: bool


def load_demo_dealers_if_empty(session) -> bool:
    """Import the demo directory when no dealer exists yet (embedded default only)."""
    from leadsvc.dealers.directory import import_dealers
    from leadsvc.dealers.models import Dealer

    if session.scalar(sa.select(sa.func.count()).select_from(Dealer)):
        return False
    report = import_dealers(session, DEMO_DEALERS.read_text(encoding="utf-8"))
    if not report.applied:
        raise RuntimeError(f"the demo dealer directory is invalid: {report.rejected}")
    return True


def prepare_database(app: Flask) -> ReleaseReport:
    """Bring the schema to head; load the ZIP directory (and, embedded, the demo dealers)."""
    from leadsvc.dealers.models import Dealer

    settings = app.config["LEADSVC_SETTINGS"]
    upgrade_schema(db.engine(app))
    with db.sessionmaker(app)() as session:
        zip_codes = ensure_zip_directory(session, settings.zip_data_dir, settings.zip_source)
        demo = load_demo_dealers_if_empty(session) if settings.embedded else False
        dealers = session.scalar(sa.select(sa.func.count()).select_from(Dealer)) or 0
    return ReleaseReport(zip_codes=zip_codes, dealers=dealers, demo_dealers_loaded=demo)
