"""The ZIP directory: pgeocode fed offline from `zipcodes`, stored once, read into memory."""

import subprocess
import sys
import textwrap

import pytest

from leadsvc.extensions import db
from leadsvc.geo.directory import ZipDirectory, ZipInput, parse_zip, zip_directory
from leadsvc.geo.source import read_zip_rows, register_pgeocode_source


@pytest.mark.parametrize(
    ("typed", "parsed"),
    [
        ("12345", ZipInput("12345", None)),
        ("12345-6789", ZipInput("12345", "6789")),
        ("12345 6789", ZipInput("12345", "6789")),
        ("  02108  ", ZipInput("02108", None)),
        ("1234", None),
        ("123456", None),
        ("12345-678", None),
        ("12345--6789", None),
        ("abcde", None),
        ("", None),
        ("１２３４５", None),  # full-width digits are not a ZIP as typed on a US form
    ],
)
def test_parse_zip(typed, parsed):
    assert parse_zip(typed) == parsed


def test_offline_source_is_a_pgeocode_source(tmp_path):
    """The file written from `zipcodes` is loaded by pgeocode like any GeoNames download."""
    import pgeocode

    register_pgeocode_source(tmp_path)
    assert pgeocode.DOWNLOAD_URL[0].startswith("file://")
    assert "geonames.org" in pgeocode.DOWNLOAD_URL[1]  # GeoNames stays usable behind it
    place = pgeocode.Nominatim("us").query_postal_code("10001")
    assert (place.place_name, place.state_code) == ("New York", "NY")
    assert place.latitude == pytest.approx(40.75, abs=0.05)
    assert (tmp_path / "cache" / "US.txt").exists()


def test_geonames_can_be_preferred(tmp_path):
    import pgeocode

    register_pgeocode_source(tmp_path, prefer="geonames")
    assert "geonames.org" in pgeocode.DOWNLOAD_URL[0]
    assert pgeocode.DOWNLOAD_URL[-1].startswith("file://")


def test_rows_cover_every_active_us_zip(zip_rows):
    by_zip = {row.zip5: row for row in zip_rows}
    assert 41_000 < len(by_zip) < 43_000
    assert "00000" not in by_zip and "99999" not in by_zip
    assert (by_zip["99501"].city, by_zip["99501"].state) == ("Anchorage", "AK")
    military = by_zip["09001"]
    assert military.state == "AE" and military.latitude is None and military.longitude is None


def test_app_reads_the_directory_from_its_database(settings, zip_rows):
    """Without a pre-loaded directory, the app reads the zip_codes table once and keeps it."""
    from leadsvc.app import create_app

    app = create_app(settings)
    try:
        directory = zip_directory(app)
        assert isinstance(directory, ZipDirectory)
        assert len(directory) == len({row.zip5 for row in zip_rows})
        assert directory.lookup("60601").city == "Chicago"
        assert zip_directory(app) is directory
    finally:
        db.engine(app).dispose()


def test_request_path_does_not_import_pandas_or_numpy(settings):
    """A signup and a ZIP lookup never load pandas, pgeocode or numpy (web processes stay small)."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from leadsvc.app import create_app
        from leadsvc.settings import Settings
        app = create_app(Settings(database_url={settings.database_url!r},
                                  secret_key="k" * 40,
                                  instance_path=Path({str(settings.instance_path)!r})))
        reply = app.test_client().post("/api/v1/signups", json={{
            "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "zip": "10001"}})
        assert reply.status_code == 202, reply.get_data(as_text=True)
        assert app.test_client().get("/api/v1/zips/10001").status_code == 200
        print("pandas" in sys.modules, "pgeocode" in sys.modules, "numpy" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


def test_read_zip_rows_is_stable(tmp_path, zip_rows):
    again = read_zip_rows(tmp_path)
    assert again == zip_rows
