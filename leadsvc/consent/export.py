"""Streaming the consent log: every event in a time range, as CSV or JSON lines.

On PostgreSQL each event's line (CSV with formula neutralisation and RFC 4180 quoting, or a JSON
object) is built in SQL, and a binary COPY hands the lines out in blocks of consecutive event
ids, one COPY row (block start, events, lines) per block, read with psycopg's `Copy.rows()`:
the exporting process handles about a thousand messages per million events instead of a million
(reading a message per event cost this process as much time as the whole query cost
PostgreSQL). Two connections share one snapshot and compute alternate blocks, so one backend
builds its next blocks while this process hands on the other's; a backend waits once its
socket's buffers are full, so what is held in between is a few MB and memory stays flat. On
SQLite a server-side cursor is read in batches through Python's csv writer. Each export is
recorded in `export_audits` (who, when, filters, rows).
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import json
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa

from leadsvc.consent.models import ExportAudit
from leadsvc.db import UTCDateTime, utcnow
from leadsvc.dealers.formats import spreadsheet_safe

COLUMNS = (
    "event_id",
    "occurred_at",
    "event_type",
    "subject",
    "text_version",
    "text_sha256",
    "ip",
    "user_agent",
    "source_url",
    "request_id",
    "dealer_code",
    "current_status",
)
FORMATS = ("csv", "jsonl")
#: Bytes handed on at a time on SQLite (to the HTTP response or the output file).
CHUNK_BYTES = 256 * 1024
#: Columns whose text comes from outside (a person, a browser, a page, a proxy's header): only
#: these can start like a spreadsheet formula. Dealer codes (validated at import), statuses and
#: event types are ours and cannot.
_TEXT_COLUMNS = {"subject", "ip", "user_agent", "source_url", "request_id"}
_EVENT_TYPES = ("given", "confirmed", "withdrawn", "erased")

_SOURCES = {
    "event_id": "e.id",
    "occurred_at": "e.occurred_at",
    "event_type": "e.event_type",
    "subject": "e.subject",
    "text_version": "e.text_version",
    "text_sha256": "t.sha256",
    "ip": "e.ip",
    "user_agent": "e.user_agent",
    "source_url": "e.source_url",
    "request_id": "e.request_id",
    "dealer_code": "d.code",
    "current_status": "CASE WHEN l.id IS NULL THEN 'purged' ELSE l.consent_status END",
}
_FROM = """
FROM consent_events e
JOIN consent_texts t ON t.version = e.text_version
LEFT JOIN leads l ON l.id = e.lead_id
LEFT JOIN dealers d ON d.id = l.dealer_id
WHERE e.occurred_at >= {start} AND e.occurred_at < {end}
ORDER BY e.id
"""
#: Code points of the first characters a spreadsheet would take for a formula: = + - @ tab CR.
#: Compared as `ascii(col) IN (...)` (an integer test) rather than `left(col, 1) IN ('=', ...)`,
#: which builds a text value and compares strings per cell: on 1M events x 5 columns the text
#: test cost about 1.0 s of server time, the integer one about 0.27 s.
_PG_FORMULA_CODES = "61, 43, 45, 64, 9, 13"
#: Events per block: one COPY row, one message to this process (about 0.4 MB of CSV).
BLOCK_EVENTS = 1024
#: Connections computing alternate blocks at once, on one snapshot.
PG_STREAMS = 2


def _plain_select(start: str, end: str) -> str:
    """The export query without COPY or neutralisation (SQLite; Python does the rest)."""
    columns = ", ".join(f"{_SOURCES[c]} AS {c}" for c in COLUMNS)
    return f"SELECT {columns} {_FROM.format(start=start, end=end)}"


def _pg_neutralised(source: str) -> str:
    """SQL for a text value with a formula-like start neutralised by a leading quote."""
    return (
        f"CASE WHEN ascii({source}) IN ({_PG_FORMULA_CODES}) "
        f"THEN '''' || {source} ELSE {source} END"
    )


def _pg_csv_text(source: str) -> str:
    """SQL for a CSV text field (RFC 4180): always quoted, quotes doubled; NULL as empty."""
    return f"""coalesce('"' || replace({source}, '"', '""') || '"', '')"""


def _pg_line(fmt: str) -> str:
    """SQL for one event's line with its newline, never NULL (string_agg would drop it).

    The text hash and the dealer code come from `texts` and `dealer_codes` (_pg_blocks_copy),
    written there as CSV fields or JSON values once per text version and per dealer.

    CSV: numbers and the time as COPY's CSV writes them (the session's DateStyle and TimeZone),
    every text field quoted, text from outside neutralised against formulas first.

    JSON: byte for byte what `json_build_object(...)::text` writes. The last six columns are
    text or NULL: one `json_object(ARRAY[key, value, ...])` escapes them all (about 0.5 us less
    per event than a `to_json` call each), and its closing brace ends the object.
    """
    status = _SOURCES["current_status"]
    if fmt == "csv":
        fields = [
            "e.id::text",
            "coalesce(e.occurred_at::text, '')",
            _pg_csv_text("e.event_type"),
            _pg_csv_text(_pg_neutralised("e.subject")),
            "coalesce(e.text_version::text, '')",
            "t.sha256",
            *(_pg_csv_text(_pg_neutralised(_SOURCES[c])) for c in COLUMNS[6:10]),
            "coalesce(d.code, '')",
            _pg_csv_text(status),
        ]
        return " || ',' || ".join(fields) + " || E'\\n'"
    value = "coalesce(to_json({})::text, 'null')".format
    # The event types we write, as literals (a comparison is cheaper than to_json).
    known = " ".join(f"""WHEN '{t}' THEN '"{t}"'""" for t in _EVENT_TYPES)
    event_type = f"CASE e.event_type {known} ELSE {value('e.event_type')} END"
    last = ", ".join(f"'{c}', {_SOURCES[c]}" for c in COLUMNS[6:])
    return (
        """'{"event_id" : ' || e.id::text"""
        f""" || ', "occurred_at" : ' || {value("e.occurred_at")}"""
        f""" || ', "event_type" : ' || {event_type}"""
        f""" || ', "subject" : ' || {value("e.subject")}"""
        """ || ', "text_version" : ' || coalesce(e.text_version::text, 'null')"""
        """ || ', "text_sha256" : ' || t.sha256"""
        f""" || ', ' || right(json_object(ARRAY[{last}])::text, -1)"""
        """ || E'\\n'"""
    )


def _pg_blocks_copy(fmt: str, start: str, end: str, first: int, last: int, step: int) -> str:
    """COPY of the blocks of BLOCK_EVENTS event ids starting at first, first + step, ... up to
    last: one binary row (bigint, bigint, bytea) per block holding events in the time range, in
    block order, with the block's start, its number of events and their lines in event id order
    (UTF-8).

    Each block is a LATERAL subquery run once per block start: a range scan of the primary key
    and the lookups of the event's text, lead and dealer, planned once for the whole COPY (a
    hash table or memoize cache built for the first block serves the next ones)."""
    if fmt == "csv":
        sha, code = _pg_csv_text("sha256"), _pg_csv_text("code")
    else:
        sha, code = "coalesce(to_json(sha256)::text, 'null')", "code"
    return f"""COPY (
WITH texts AS MATERIALIZED (SELECT version, {sha} AS sha256 FROM consent_texts),
dealer_codes AS MATERIALIZED (SELECT id, {code} AS code FROM dealers)
SELECT blocks.b, block.events, block.lines
FROM (SELECT b FROM generate_series({first}::bigint, {last}::bigint, {step}) AS b ORDER BY b)
     AS blocks
CROSS JOIN LATERAL (
    SELECT count(*) AS events,
           convert_to(string_agg(event.line, '' ORDER BY event.id), 'UTF8') AS lines
    FROM (
        SELECT e.id, {_pg_line(fmt)} AS line
        FROM consent_events e
        JOIN texts t ON t.version = e.text_version
        LEFT JOIN leads l ON l.id = e.lead_id
        LEFT JOIN dealer_codes d ON d.id = l.dealer_id
        WHERE e.id >= blocks.b AND e.id < blocks.b + {BLOCK_EVENTS}
          AND e.occurred_at >= {start} AND e.occurred_at < {end}
    ) AS event
) AS block
WHERE block.events > 0
ORDER BY blocks.b
) TO STDOUT (FORMAT binary)"""


def _row_dict(row) -> dict:
    record = dict(zip(COLUMNS, row, strict=True))
    if isinstance(record["occurred_at"], datetime):
        record["occurred_at"] = record["occurred_at"].isoformat()
    return record


def _sqlite_chunks(connection, fmt: str, start: datetime, end: datetime) -> Iterator[bytes]:
    query = (
        sa.text(_plain_select(":start", ":end"))
        .bindparams(
            sa.bindparam("start", type_=UTCDateTime), sa.bindparam("end", type_=UTCDateTime)
        )
        .columns(
            *(sa.column(c, UTCDateTime) if c == "occurred_at" else sa.column(c) for c in COLUMNS)
        )
    )
    result = connection.execution_options(yield_per=5000).execute(
        query, {"start": start, "end": end}
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(COLUMNS)
    for rows in result.partitions():
        for row in rows:
            record = _row_dict(row)
            if fmt == "csv":
                writer.writerow(
                    [
                        spreadsheet_safe(record[c]) if c in _TEXT_COLUMNS else record[c] or ""
                        for c in COLUMNS
                    ]
                )
            else:
                buffer.write(json.dumps(record, ensure_ascii=False) + "\n")
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    tail = buffer.getvalue()
    if tail:
        yield tail.encode()


def _pg_snapshot_connections(stack: contextlib.ExitStack, engine: sa.Engine) -> list[sa.Connection]:
    """PG_STREAMS connections in REPEATABLE READ transactions on one snapshot (as pg_dump --jobs
    does): the blocks they compute together are exactly the events one COPY would have seen."""
    connections = [stack.enter_context(engine.connect()) for _ in range(PG_STREAMS)]
    for connection in connections:
        connection.execution_options(isolation_level="REPEATABLE READ")
    snapshot = connections[0].execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
    for connection in connections[1:]:
        connection.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
    for connection in connections:
        # The plan's cost is that of a million events, which buys LLVM's inlining and
        # optimisation: about 0.3 s of compiling per connection before the first block, for
        # string expressions that plain JIT compiles in a few milliseconds.
        connection.execute(sa.text("SET LOCAL jit_inline_above_cost = -1"))
        connection.execute(sa.text("SET LOCAL jit_optimize_above_cost = -1"))
    return connections


def _pg_chunks(
    engine: sa.Engine, fmt: str, start: datetime, end: datetime, counter: ExportCounter
) -> Iterator[bytes]:
    literal = lambda value: "'" + value.isoformat() + "'::timestamptz"  # noqa: E731
    start_sql, end_sql = literal(start), literal(end)
    id_range = sa.text(
        "SELECT min(id), max(id) FROM consent_events "
        f"WHERE occurred_at >= {start_sql} AND occurred_at < {end_sql}"
    )
    if fmt == "csv":
        counter.lines += 1
        yield (",".join(COLUMNS) + "\n").encode()
    with contextlib.ExitStack() as stack:
        connections = _pg_snapshot_connections(stack, engine)
        lowest, highest = connections[0].execute(id_range).one()
        if lowest is None:
            return
        step = BLOCK_EVENTS * len(connections)
        streams = []
        for i, connection in enumerate(connections):
            sql = _pg_blocks_copy(fmt, start_sql, end_sql, lowest + i * BLOCK_EVENTS, highest, step)
            cursor = stack.enter_context(connection.connection.driver_connection.cursor())
            # Left on an exception (GeneratorExit too: the consumer went away), a Copy cancels
            # its COPY and reads off what was on its way, and the connection is fit for reuse.
            copy = stack.enter_context(cursor.copy(sql))
            copy.set_types(["int8", "int8", "bytea"])
            streams.append(copy.rows())
        # Each connection's blocks come in order of their start; merged, in event id order.
        for _, events, lines in heapq.merge(*streams):
            counter.lines += events
            yield lines


class ExportCounter:
    """Counts lines as chunks pass, so the audit can say how many rows went out."""

    def __init__(self, fmt: str):
        self.lines = 0
        self.header = fmt == "csv"

    def rows(self) -> int:
        return max(self.lines - (1 if self.header else 0), 0)


def stream_export(
    engine: sa.Engine,
    fmt: str,
    start: datetime,
    end: datetime,
    actor: str,
    counter: ExportCounter | None = None,
) -> Iterator[bytes]:
    """The export as byte chunks; the audit row is written before the first and after the last."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    counter = counter or ExportCounter(fmt)
    filters = {"from": start.isoformat(), "to": end.isoformat()}
    with engine.begin() as connection:
        audit_id = connection.execute(
            sa.insert(ExportAudit)
            .values(actor=actor[:100], started_at=utcnow(), filters=filters, format=fmt)
            .returning(ExportAudit.id)
        ).scalar_one()
    if engine.dialect.name == "postgresql":
        yield from _pg_chunks(engine, fmt, start, end, counter)
    else:
        with engine.connect() as connection:
            for chunk in _sqlite_chunks(connection, fmt, start, end):
                counter.lines += _count_lines(chunk)
                yield chunk
    with engine.begin() as connection:
        connection.execute(
            sa.update(ExportAudit)
            .where(ExportAudit.id == audit_id)
            .values(finished_at=utcnow(), rows=counter.rows())
        )


def _count_lines(chunk: bytes) -> int:
    """Rows in a chunk. Stored text never holds a line break (control characters are refused or
    dropped at the door), so every newline ends a row, in CSV as in JSON lines."""
    return chunk.count(b"\n")
