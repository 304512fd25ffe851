"""Lead pages as CSV (safe to open in a spreadsheet) and as ADF 1.0 XML."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "zip",
    "zip4",
    "distance_km",
    "distance_miles",
    "routing_reason",
    "consent",
    "email_status",
    "created_at",
    "acknowledged_at",
    "interests",
    "source",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """The cell text, with a leading quote where a spreadsheet would otherwise run a formula."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(str(item) for item in value)
    elif hasattr(value, "isoformat"):
        return value.isoformat()
    elif isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def leads_csv(records: list[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header row, every text cell neutralised against formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([spreadsheet_safe(record.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()
