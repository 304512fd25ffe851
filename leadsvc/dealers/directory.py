"""The dealer directory: CSV import (upsert by code), territory assignment, deactivation.

Each change rebuilds the routing table in the same transaction, so routing never lags the
directory. Imports are all-or-nothing unless `partial=True`: with any invalid row, nothing changes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.dealers.dealer_rows import validate_dealer
from leadsvc.dealers.models import Dealer, Territory
from leadsvc.dealers.route_builder import RebuildReport, rebuild_routes, reroute_unacknowledged
from leadsvc.geo.directory import parse_zip
from leadsvc.geo.models import ZipCode
from leadsvc.leads.email_address import EmailChecker

DEALER_COLUMNS = (
    "code",
    "name",
    "street",
    "city",
    "state",
    "zip",
    "phone",
    "lead_email",
    "webhook_url",
    "webhook_secret",
    "latitude",
    "longitude",
    "response_hours",
    "opening_hours",
    "time_zone",
)
REQUIRED_DEALER_COLUMNS = DEALER_COLUMNS[:8]
TERRITORY_COLUMNS = ("zip", "dealer_code")
#: Optional territory column: yes when the ZIP's overdue leads move on (see leadsvc.followup).
TERRITORY_OPTIONAL = ("reassign_overdue",)
_YES, _NO = ("yes", "true", "1", "y"), ("no", "false", "0", "n", "")
#: Fields compared to tell "updated" from "unchanged".
_DEALER_FIELDS = (
    "name",
    "street",
    "city",
    "state",
    "zip5",
    "phone",
    "lead_email",
    "webhook_url",
    "webhook_secret",
    "latitude",
    "longitude",
    "coordinates_from",
    "response_hours",
    "opening_hours",
    "time_zone",
)

Progress = Callable[[int], None]


class ImportFileError(ValueError):
    """The file itself is unusable (header, encoding); no row was looked at."""


@dataclass
class RowOutcome:
    line: int
    key: str
    action: str  # created | updated | unchanged | assigned | rejected
    reason: str | None = None


@dataclass
class ImportReport:
    rows: list[RowOutcome] = field(default_factory=list)
    applied: bool = False
    routes: RebuildReport | None = None

    def count(self, action: str) -> int:
        return sum(1 for row in self.rows if row.action == action)

    @property
    def rejected(self) -> list[RowOutcome]:
        return [row for row in self.rows if row.action == "rejected"]


def _read_csv(
    text: str, required: tuple[str, ...], allowed: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; lines starting with # are comments; header checked first."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for fields in reader:
        if not fields or (fields[0].startswith("#")) or not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [name.strip().lower() for name in fields]
            unknown = [name for name in header if name not in allowed]
            missing = [name for name in required if name not in header]
            if unknown:
                raise ImportFileError(
                    f"line {reader.line_num}: unknown column(s): {', '.join(unknown)}"
                )
            if missing:
                raise ImportFileError(
                    f"line {reader.line_num}: missing column(s): {', '.join(missing)}"
                )
            if len(set(header)) != len(header):
                raise ImportFileError(f"line {reader.line_num}: a column is named twice")
            continue
        if len(fields) != len(header):
            yield reader.line_num, {"__error__": f"{len(fields)} values for {len(header)} columns"}
            continue
        yield (
            reader.line_num,
            {name: value.strip() for name, value in zip(header, fields, strict=True)},
        )
    if header is None:
        raise ImportFileError("the file is empty: expected a header row")


def decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(f"the file is not UTF-8 (byte {error.start})") from None


def _zip_centres(session: Session, raw_zips: Iterable[str]) -> dict[str, tuple]:
    wanted = {z.zip5 for z in map(parse_zip, raw_zips) if z is not None}
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(ZipCode.zip5, ZipCode.latitude, ZipCode.longitude).where(ZipCode.zip5.in_(wanted))
    )
    return {zip5: (lat, lon) for zip5, lat, lon in rows}


def import_dealers(
    session: Session,
    text: str,
    *,
    partial: bool = False,
    progress: Progress | None = None,
    webhook_networks: tuple = (),
) -> ImportReport:
    """Upsert dealers by code from CSV text; commit only if every row is valid (or `partial`).
    `webhook_networks`: the WEBHOOK_ALLOWED_NETWORKS setting."""
    rows = list(_read_csv(text, REQUIRED_DEALER_COLUMNS, DEALER_COLUMNS))
    return import_dealer_rows(
        session, rows, partial=partial, progress=progress, webhook_networks=webhook_networks
    )


Rows = list[tuple[int, dict[str, str]]]


def import_dealer_rows(
    session: Session,
    rows: Rows,
    *,
    partial: bool = False,
    progress: Progress | None = None,
    webhook_networks: tuple = (),
) -> ImportReport:
    """Upsert dealers from (line, {column: text}) rows, as the CSV import and the admin API give."""
    centres = _zip_centres(session, (row.get("zip", "") for _, row in rows))
    emails = EmailChecker()
    report = ImportReport()
    valid: list[tuple[RowOutcome, dict[str, Any]]] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        key = row.get("code", "").upper()
        try:
            values = validate_dealer(row, centres, emails, webhook_networks=webhook_networks)
            if values["code"] in first_line:
                raise ValueError(
                    f"duplicate code {values['code']} (first on line {first_line[values['code']]})"
                )
            first_line[values["code"]] = line
        except ValueError as error:
            report.rows.append(RowOutcome(line, key, "rejected", str(error)))
        else:
            outcome = RowOutcome(line, values["code"], "pending")
            report.rows.append(outcome)
            valid.append((outcome, values))
        if progress:
            progress(1)
    if report.rejected and not partial:
        for outcome, _ in valid:
            outcome.action = "not applied"
        session.rollback()
        return report

    existing = {
        d.code: d for d in session.scalars(sa.select(Dealer).where(Dealer.code.in_(first_line)))
    }
    now = utcnow()
    for outcome, values in valid:
        dealer = existing.get(values["code"])
        if dealer is None:
            session.add(Dealer(**values, active=True, created_at=now, updated_at=now))
            outcome.action = "created"
        elif any(getattr(dealer, name) != values[name] for name in _DEALER_FIELDS):
            for name in _DEALER_FIELDS:
                setattr(dealer, name, values[name])
            dealer.updated_at = now
            outcome.action = "updated"
        else:
            outcome.action = "unchanged"
    if report.count("created") or report.count("updated"):
        session.flush()
        report.routes = rebuild_routes(session)
    session.commit()
    report.applied = True
    return report


def assign_territories(
    session: Session, text: str, *, partial: bool = False, progress: Progress | None = None
) -> ImportReport:
    """Assign ZIPs to dealers from CSV (`zip,dealer_code`); a new assignment replaces the old."""
    rows = list(_read_csv(text, TERRITORY_COLUMNS, TERRITORY_COLUMNS + TERRITORY_OPTIONAL))
    return assign_territory_rows(session, rows, partial=partial, progress=progress)


def _territory_problem(row, zip_input, code, centres, dealers, first_line) -> str | None:
    """Why a territory row cannot be applied, or None."""
    if "__error__" in row:
        return row["__error__"]
    if zip_input is None or zip_input.zip5 not in centres:
        return f"ZIP {row.get('zip')!r} is not a US ZIP code"
    if not code:
        return "missing dealer_code"
    if code not in dealers:
        return f"no dealer with code {code}"
    if zip_input.zip5 in first_line:
        return f"duplicate ZIP {zip_input.zip5} (first on line {first_line[zip_input.zip5]})"
    if str(row.get("reassign_overdue", "")).strip().lower() not in _YES + _NO:
        return "reassign_overdue must be yes or no"
    return None


def assign_territory_rows(
    session: Session, rows: Rows, *, partial: bool = False, progress: Progress | None = None
) -> ImportReport:
    """Assign ZIPs to dealers from (line, {"zip", "dealer_code"}) rows."""
    centres = _zip_centres(session, (row.get("zip", "") for _, row in rows))
    codes = {row.get("dealer_code", "").upper() for _, row in rows}
    dealers = dict(
        session.execute(sa.select(Dealer.code, Dealer.id).where(Dealer.code.in_(codes))).all()
    )
    report = ImportReport()
    valid: list[tuple[RowOutcome, str, int]] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        zip_input = parse_zip(row.get("zip", ""))
        code = row.get("dealer_code", "").upper()
        key = zip_input.zip5 if zip_input else row.get("zip", "")
        reason = _territory_problem(row, zip_input, code, centres, dealers, first_line)
        if reason:
            report.rows.append(RowOutcome(line, key, "rejected", reason))
        else:
            first_line[zip_input.zip5] = line
            outcome = RowOutcome(line, f"{zip_input.zip5} -> {code}", "pending")
            report.rows.append(outcome)
            moves_on = str(row.get("reassign_overdue", "")).strip().lower() in _YES
            valid.append((outcome, zip_input.zip5, dealers[code], moves_on))
        if progress:
            progress(1)
    if report.rejected and not partial:
        for outcome, *_ in valid:
            outcome.action = "not applied"
        session.rollback()
        return report
    current = {
        zip5: (dealer_id, moves_on)
        for zip5, dealer_id, moves_on in session.execute(
            sa.select(Territory.zip5, Territory.dealer_id, Territory.reassign_overdue).where(
                Territory.zip5.in_(first_line)
            )
        )
    }
    for outcome, zip5, dealer_id, moves_on in valid:
        if current.get(zip5) == (dealer_id, moves_on):
            outcome.action = "unchanged"
            continue
        territory = Territory(
            zip5=zip5, dealer_id=dealer_id, assigned_at=utcnow(), reassign_overdue=moves_on
        )
        session.merge(territory)
        outcome.action = "assigned"
    if report.count("assigned"):
        session.flush()
        report.routes = rebuild_routes(session)
    session.commit()
    report.applied = True
    return report


@dataclass(frozen=True)
class DeactivationReport:
    code: str
    moved_leads: int
    routes: RebuildReport


def deactivate_dealer(session: Session, code: str) -> DeactivationReport:
    """Deactivate a dealer, rebuild routing, move its unacknowledged leads to their new dealer."""
    dealer = session.scalar(sa.select(Dealer).where(Dealer.code == code.upper()).with_for_update())
    if dealer is None:
        raise LookupError(f"no dealer with code {code.upper()}")
    dealer.active = False
    dealer.updated_at = utcnow()
    session.flush()
    routes = rebuild_routes(session)
    moved = reroute_unacknowledged(session, dealer.id, "dealer_deactivated")
    session.commit()
    return DeactivationReport(dealer.code, moved, routes)


def list_dealers(session: Session) -> list[Dealer]:
    return list(session.scalars(sa.select(Dealer).order_by(Dealer.code)))
