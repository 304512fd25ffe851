"""The ZIP directory the request path uses: parsed ZIP input, and an in-memory map of real ZIPs.

It is filled from the `zip_codes` table once per process (no pandas, no geocoding per request);
the table itself is written by `store_zip_directory` at `leadsvc db upgrade` / `leadsvc zips load`.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from leadsvc.geo.models import ZipCode

#: The form's own words for anything that is not a US ZIP code.
INVALID_ZIP = "Please enter a valid Zip code."
#: A ZIP or ZIP+4, written so that it also serves as the OpenAPI pattern (ECMA-262).
ZIP_SHAPE = r"^([0-9]{5})(?:[- ]([0-9]{4}))?$"
ZIP_PATTERN = re.compile(ZIP_SHAPE)


@dataclass(frozen=True, slots=True)
class ZipInput:
    """A ZIP as typed, split into its five-digit code and optional +4 add-on."""

    zip5: str
    zip4: str | None


def parse_zip(raw: str) -> ZipInput | None:
    """`12345`, `12345-6789`, `12345 6789`, with surrounding spaces; None if not that shape."""
    match = ZIP_PATTERN.match(raw.strip())
    if match is None:
        return None
    return ZipInput(match.group(1), match.group(2))


@dataclass(frozen=True, slots=True)
class ZipPlace:
    city: str
    state: str


class ZipDirectory:
    """Every real US ZIP code, in memory, compactly.

    One dict maps each ZIP to a row number; city and state are lists of interned strings by row.
    The routing table keeps its columns by the same row numbers, so the web process holds each
    ZIP string once (about 6 MB for ~42k ZIPs and their routes).
    """

    def __init__(self, places: Iterable[tuple[str, str, str]]):
        self._row: dict[str, int] = {}
        self._city: list[str] = []
        self._state: list[str] = []
        for zip5, city, state in places:  # one pass: no full copy of the rows held at once
            self._row[sys.intern(zip5)] = len(self._city)
            self._city.append(sys.intern(city))
            self._state.append(sys.intern(state))

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, zip5: str) -> bool:
        return zip5 in self._row

    def row_of(self, zip5: str) -> int | None:
        """The ZIP's row number (shared with the routing table), or None if it is not a ZIP."""
        return self._row.get(zip5)

    def lookup(self, zip5: str) -> ZipPlace | None:
        row = self._row.get(zip5)
        return None if row is None else ZipPlace(self._city[row], self._state[row])

    @classmethod
    def from_database(cls, session: Session) -> ZipDirectory:
        result = (
            session.connection()
            .execution_options(yield_per=2000)
            .execute(sa.select(ZipCode.zip5, ZipCode.city, ZipCode.state).order_by(ZipCode.zip5))
        )
        return cls(result)


_EXTENSION_KEY = "leadsvc.zip_directory"
_load_lock = threading.Lock()


def zip_directory(app: Flask | None = None) -> ZipDirectory:
    """The app's ZIP directory, read from the database on first use and then kept in memory."""
    directory = (app or current_app).extensions.get(_EXTENSION_KEY)
    if directory is not None:
        return directory
    from leadsvc.extensions import db

    app = app or current_app._get_current_object()
    with _load_lock:
        directory = app.extensions.get(_EXTENSION_KEY)
        if directory is None:
            with db.sessionmaker(app)() as session:
                directory = ZipDirectory.from_database(session)
            if len(directory) == 0:
                raise RuntimeError("the ZIP directory is empty: run `leadsvc db upgrade`")
            app.extensions[_EXTENSION_KEY] = directory
    return directory


def store_zip_directory(session: Session, rows) -> int:
    """Replace the `zip_codes` table with `rows` (from `leadsvc.geo.source.read_zip_rows`)."""
    session.execute(sa.delete(ZipCode))
    payload = [
        {
            "zip5": r.zip5,
            "city": r.city,
            "state": r.state,
            "latitude": r.latitude,
            "longitude": r.longitude,
        }
        for r in rows
    ]
    session.execute(sa.insert(ZipCode), payload)
    return len(payload)


def zip_directory_size(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(ZipCode)) or 0


def ensure_zip_directory(session: Session, data_dir, prefer: str = "offline") -> int:
    """Fill the `zip_codes` table from pgeocode when it is empty; returns how many rows it has."""
    count = zip_directory_size(session)
    if count:
        return count
    from leadsvc.geo.source import read_zip_rows

    count = store_zip_directory(session, read_zip_rows(data_dir, prefer))
    session.commit()
    return count
