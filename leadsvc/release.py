"""The release step (Procfile `release: leadsvc db upgrade`): migrate, then load reference data.

The embedded default (`leadsvc serve` with no settings) runs it too before serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from leadsvc.db import upgrade_schema
from leadsvc.extensions import db
from leadsvc.geo.directory import ensure_zip_directory


@dataclass(frozen=True)
class ReleaseReport:
    zip_codes: int


def prepare_database(app: Flask) -> ReleaseReport:
    """Bring the schema to head and make sure the ZIP directory is loaded."""
    settings = app.config["LEADSVC_SETTINGS"]
    upgrade_schema(db.engine(app))
    with db.sessionmaker(app)() as session:
        zip_codes = ensure_zip_directory(session, settings.zip_data_dir, settings.zip_source)
    return ReleaseReport(zip_codes=zip_codes)
