"""Where ZIP data comes from: pgeocode, fed offline from the `zipcodes` package.

pgeocode downloads GeoNames files at run time; production containers (and these machines) have
no internet. The `zipcodes` package (MIT) embeds every US ZIP code, so we write its active rows
once as a GeoNames-format file and register it as a pgeocode source (a `file://` URL at the head
of `pgeocode.DOWNLOAD_URL`); GeoNames itself stays in the list behind it, or ahead of it with
`ZIP_SOURCE=geonames`. This module imports pandas (through pgeocode): it runs at import time
(`leadsvc db upgrade`, `leadsvc zips load`), never on a request.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

GEONAMES_URLS = [
    "https://download.geonames.org/export/zip/{country}.zip",
    "https://symerio.github.io/postal-codes-data/data/geonames/{country}.txt",
]

STATE_NAMES = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "DC": "District of Columbia",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
    "PR": "Puerto Rico",
    "VI": "Virgin Islands",
    "GU": "Guam",
    "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
    "FM": "Federated States of Micronesia",
    "MH": "Marshall Islands",
    "PW": "Palau",
    "AA": "Armed Forces Americas",
    "AE": "Armed Forces Europe",
    "AP": "Armed Forces Pacific",
}


@dataclass(frozen=True)
class ZipRow:
    zip5: str
    city: str
    state: str
    latitude: float | None
    longitude: float | None


def write_offline_geonames_file(path: Path) -> int:
    """Write the `zipcodes` package's active US ZIPs as a GeoNames tab-separated file.

    Military ZIPs carry 0,0 in `zipcodes`; they are written without coordinates (they are real
    ZIPs with no place to measure from). Returns the number of rows written.
    """
    import zipcodes

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        for entry in zipcodes.list_all():
            if not entry["active"]:
                continue
            lat, lon = float(entry["lat"] or 0), float(entry["long"] or 0)
            has_centre = not (lat == 0 and lon == 0)
            state = entry["state"]
            writer.writerow(
                [
                    "US",
                    entry["zip_code"],
                    entry["city"],
                    STATE_NAMES.get(state, state),
                    state,
                    entry["county"],
                    "",
                    "",
                    "",
                    f"{lat:.4f}" if has_centre else "",
                    f"{lon:.4f}" if has_centre else "",
                    "4" if has_centre else "",
                ]
            )
            rows += 1
    tmp.replace(path)
    return rows


def register_pgeocode_source(data_dir: Path, prefer: str = "offline") -> None:
    """Point pgeocode at `data_dir` for its cache and register the offline file as a source."""
    import pgeocode

    offline = data_dir / "source" / "US.txt"
    if not offline.exists():
        write_offline_geonames_file(offline)
    offline_url = (data_dir / "source").resolve().as_uri() + "/{country}.txt"
    pgeocode.STORAGE_DIR = str(data_dir / "cache")
    sources = [offline_url, *GEONAMES_URLS]
    pgeocode.DOWNLOAD_URL = sources if prefer == "offline" else [*GEONAMES_URLS, offline_url]


def _coordinate(value) -> float | None:
    number = float(value)
    return None if math.isnan(number) else round(number, 4)


def read_zip_rows(data_dir: Path, prefer: str = "offline") -> list[ZipRow]:
    """Every US ZIP code as pgeocode knows it (one row per ZIP, places merged)."""
    import pgeocode

    register_pgeocode_source(data_dir, prefer)
    # pgeocode answers queries for lists of codes: ask for every five-digit code, keep the known.
    every_code = [f"{number:05d}" for number in range(100_000)]
    frame = pgeocode.Nominatim("us").query_postal_code(every_code).dropna(subset=["place_name"])
    rows = []
    for zip5, place, state, lat, lon in frame[
        ["postal_code", "place_name", "state_code", "latitude", "longitude"]
    ].itertuples(index=False):
        code = str(zip5).zfill(5)
        if len(code) != 5 or not code.isdigit():
            continue
        city = str(place).split(",")[0].strip()[:100]
        rows.append(ZipRow(code, city, str(state)[:2], _coordinate(lat), _coordinate(lon)))
    return rows
