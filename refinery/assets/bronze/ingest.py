"""Reading landed files into bronze frames without losing a line.

Every line of every landing file becomes one bronze row: parsed fields as text when the line is
a JSON object, else the raw text and a parse error. File-level problems (an empty file, a gzip
stream cut short) become one extra row with `_line = 0` or the line after the last, so they are
visible downstream and counted in the accounting invariant.
"""

from __future__ import annotations

import codecs
import io
import json
import threading
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from refinery.contracts.bronze import BRONZE_CONTRACTS, EVENT_FIELDS, SOURCE_FIELDS

EVENT_SUFFIXES = (".jsonl", ".jsonl.gz")


class LandingError(Exception):
    """A landing problem no row can represent: the user must act (re-deliver, fix the export)."""


@dataclass(frozen=True)
class RawFile:
    data: bytes
    truncated: str | None  # why the stream ended early, when it did


def read_raw(path: Path) -> RawFile:
    """The file's bytes; for gzip, everything that decompresses before any corruption."""
    blob = path.read_bytes()
    if not path.name.endswith(".gz"):
        return RawFile(blob, None)
    decomp = zlib.decompressobj(wbits=47)  # auto-detect gzip/zlib header
    try:
        out = decomp.decompress(blob) + decomp.flush()
    except zlib.error as exc:
        # Decompress again in small pieces to keep what precedes the corruption.
        decomp, parts = zlib.decompressobj(wbits=47), []
        for start in range(0, len(blob), 1 << 16):
            try:
                parts.append(decomp.decompress(blob[start : start + (1 << 16)]))
            except zlib.error:
                break
        return RawFile(b"".join(parts), f"corrupt gzip stream: {exc}")
    if not decomp.eof:
        return RawFile(out, "gzip stream ends before its end-of-stream marker (truncated file)")
    return RawFile(out, None)


_bad_utf8 = threading.local()


def _record_bad_utf8(err: UnicodeDecodeError):
    _bad_utf8.offsets.append(err.start)
    return ("\ufffd", err.end)


codecs.register_error("refinery_record_bad_utf8", _record_bad_utf8)


def decode_lines(data: bytes) -> tuple[pl.Series, np.ndarray]:
    """Split into lines (without line endings) and flag the lines that held invalid UTF-8.

    Decoding is one pass in C; the error handler runs only on bad bytes, so clean files cost
    nothing extra.
    """
    _bad_utf8.offsets = []
    text = data.decode("utf-8", errors="refinery_record_bad_utf8")
    offsets = np.asarray(_bad_utf8.offsets, dtype=np.int64)
    if text.endswith("\n"):
        text = text[:-1]
    lines = pl.Series("_raw", [text], dtype=pl.String).str.split("\n").explode()
    lines = lines.str.strip_suffix("\r")
    bad = np.zeros(len(lines), dtype=bool)
    if offsets.size:
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        bad[np.searchsorted(newlines, offsets, side="left")] = True
    return lines, bad


_duck_local = threading.local()


def _duck() -> duckdb.DuckDBPyConnection:
    if getattr(_duck_local, "con", None) is None:
        _duck_local.con = duckdb.connect()
    return _duck_local.con


def classify_json_lines(lines: pl.Series) -> pl.Series:
    """For each line: null if it is a JSON object, else why not (`malformed_json`, ...)."""
    frame = pl.DataFrame({"line": lines})  # noqa: F841 - read by DuckDB's replacement scan
    return (
        _duck()
        .sql(
            """
            select case
                when not json_valid(line) then 'malformed_json'
                when json_type(line::json) <> 'OBJECT' then 'not_a_json_object'
            end as why
            from frame
            """
        )
        .pl()
        .to_series()
    )


def parse_objects(
    lines: pl.Series, fields: tuple[str, ...], payload: bytes | None = None
) -> pl.DataFrame:
    """Contract fields of JSON-object lines as text (numbers and nested values as their JSON).

    `payload`: the lines' original bytes when every line is an object (the common case), which
    saves joining them again."""
    schema = {f: pl.String for f in fields}
    if lines.len() == 0:
        return pl.DataFrame(schema=schema)
    if payload is None:
        payload = lines.str.join("\n").item().encode()
    try:
        parsed = pl.read_ndjson(io.BytesIO(payload), schema=schema)
    except pl.exceptions.PolarsError:
        parsed = None
    if parsed is None or parsed.height != lines.len():
        # Slow path, only when Polars and DuckDB disagree on an odd line.
        rows = []
        for line in lines:
            obj = json.loads(line)
            rows.append({f: _as_text(obj.get(f)) for f in fields})
        parsed = pl.DataFrame(rows, schema=schema)
    return parsed


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _file_record(fields, source_file: str, line: int, error: str, detail: str) -> dict:
    return {
        "_raw": "",
        **{f: None for f in fields},
        "_parse_error": error,
        "_parse_detail": detail,
        "_source_file": source_file,
        "_line": line,
    }


CHUNK_BYTES = 128 << 20  # parse a landing file this much at a time: memory stays flat


def line_chunks(data: bytes, size: int = CHUNK_BYTES):
    """(number of the chunk's first line, chunk) pieces of `data`, cut after a newline."""
    start, first_line = 0, 1
    while start < len(data):
        end = min(start + size, len(data))
        if end < len(data):
            newline = data.find(b"\n", end - 1)
            end = len(data) if newline == -1 else newline + 1
        chunk = data[start:end]
        yield first_line, chunk
        first_line += chunk.count(b"\n")
        start = end


def bronze_event_parts(path: Path, source_file: str, chunk_bytes: int = CHUNK_BYTES):
    """One events landing file → bronze frames, a chunk of lines at a time.

    Without `_ingested_at`/`_arrival_date`; file-level records (empty file, truncated gzip)
    come last.
    """
    raw = read_raw(path)
    lines_seen = 0
    for first_line, chunk in line_chunks(raw.data, chunk_bytes):
        frame = _event_lines(chunk, source_file, first_line)
        lines_seen = first_line - 1 + frame.height
        yield frame
    records: list[dict] = []
    if not raw.data and raw.truncated is None:
        records.append(_file_record(EVENT_FIELDS, source_file, 0, "empty_file", "file has no bytes"))
    if raw.truncated is not None:
        records.append(
            _file_record(EVENT_FIELDS, source_file, lines_seen + 1, "truncated_gzip", raw.truncated)
        )
    if records:
        yield pl.DataFrame(records, schema=_schema("events", False))


def bronze_events_from_file(path: Path, source_file: str) -> pl.DataFrame:
    """One events landing file → bronze rows (without `_ingested_at`/`_arrival_date`)."""
    parts = list(bronze_event_parts(path, source_file))
    return pl.concat(parts) if parts else _empty("events")


_PARSE_DETAIL = {
    "invalid_utf8": "line holds bytes that are not valid UTF-8",
    "malformed_json": "line is not valid JSON",
    "not_a_json_object": "line is JSON but not an object",
}


def _event_lines(data: bytes, source_file: str, first_line: int = 1) -> pl.DataFrame:
    lines, bad_utf8 = decode_lines(data)
    why = classify_json_lines(lines)
    why = pl.select(
        pl.when(pl.lit(pl.Series(bad_utf8))).then(pl.lit("invalid_utf8")).otherwise(why)
    ).to_series()
    ok = why.is_null()
    if ok.all():  # every line parses: no filtering, no scattering back
        fields = parse_objects(lines, EVENT_FIELDS, payload=data).get_columns()
    else:
        parsed = parse_objects(lines.filter(ok), EVENT_FIELDS)
        # Scatter the parsed fields back to the lines they came from.
        at = pl.Series(np.flatnonzero(ok.to_numpy()), dtype=pl.Int64)
        fields = [
            pl.Series(f, [None] * lines.len(), dtype=pl.String).scatter(at, parsed[f])
            if at.len()
            else pl.Series(f, [None] * lines.len(), dtype=pl.String)
            for f in EVENT_FIELDS
        ]
    frame = pl.DataFrame([lines, *fields, why.alias("_parse_error")]).with_columns(
        _parse_detail=pl.col("_parse_error").replace_strict(_PARSE_DETAIL, default=None),
        _source_file=pl.lit(source_file),
        _line=pl.int_range(first_line, first_line + lines.len(), dtype=pl.Int64),
    )
    return frame.select(list(_schema("events", False)))


def _empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=_schema(table, False))


def bronze_snapshot_from_file(path: Path, source_file: str, table: str) -> pl.DataFrame:
    """A CRM/catalogue CSV snapshot → bronze rows, every value as text.

    A missing contract column is recorded on every row (`missing_column`) so silver quarantines the
    snapshot with that reason; an unreadable file raises `LandingError` naming it.
    """
    fields = SOURCE_FIELDS[table]
    try:
        frame = pl.read_csv(
            path,
            infer_schema=False,
            encoding="utf8-lossy",
        )
    except pl.exceptions.NoDataError:
        frame = pl.DataFrame()
    except pl.exceptions.PolarsError as exc:
        raise LandingError(
            f"cannot read the {table} snapshot {path}: {exc}. Fix or re-deliver the file "
            f"(a CSV with the header {', '.join(fields)}), then re-run this partition."
        ) from exc
    if frame.width == 0:
        raise LandingError(
            f"the {table} snapshot {path} is empty (no header, no rows). Re-deliver the full "
            f"snapshot with the header {', '.join(fields)}, then re-run this partition."
        )
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [f for f in fields if f not in frame.columns]
    frame = frame.with_columns([pl.lit(None, dtype=pl.String).alias(f) for f in missing])
    error = "missing_column" if missing else None
    detail = f"snapshot lacks column(s): {', '.join(missing)}" if missing else None
    frame = frame.select(list(fields)).with_columns(
        _parse_error=pl.lit(error, dtype=pl.String),
        _parse_detail=pl.lit(detail, dtype=pl.String),
        _source_file=pl.lit(source_file),
        # header is line 1 of the file
        _line=pl.int_range(2, frame.height + 2, dtype=pl.Int64),
    )
    return frame.with_columns(pl.col(list(fields)).str.strip_chars())


def _schema(table: str, with_meta: bool) -> dict:
    cols = BRONZE_CONTRACTS[table].columns
    drop = set() if with_meta else {"_ingested_at", "_arrival_date"}
    return {c.name: c.dtype for c in cols if c.name not in drop}


def stamp(frame: pl.DataFrame, table: str, arrival_date: date, ingested_at: datetime) -> pl.DataFrame:
    """Add ingestion metadata and put columns in contract order and types."""
    ingested_at = ingested_at.astimezone(timezone.utc)
    frame = frame.with_columns(
        _ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        _arrival_date=pl.lit(arrival_date, dtype=pl.Date),
    )
    return frame.select([pl.col(n).cast(t) for n, t in _schema(table, with_meta=True).items()])


def landing_files(landing_dir: Path, table: str) -> tuple[list[Path], list[Path]]:
    """(files to ingest, files ignored) in a landing folder, sorted by name."""
    if not landing_dir.is_dir():
        raise LandingError(
            f"no {table} landed for this date: {landing_dir} does not exist. Wait for the upstream "
            f"export (the landing_sensor starts this partition when it arrives) or re-deliver it."
        )
    files = sorted(p for p in landing_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if table == "events":
        wanted = [p for p in files if p.name.endswith(EVENT_SUFFIXES)]
    else:
        wanted = [p for p in files if p.name == f"{table}.csv"]
    ignored = [p for p in files if p not in wanted]
    if not wanted:
        expected = "*.jsonl or *.jsonl.gz" if table == "events" else f"{table}.csv"
        raise LandingError(
            f"no {table} file in {landing_dir} (expected {expected}; found "
            f"{[p.name for p in files] or 'nothing'}). Re-deliver the export, then re-run."
        )
    return wanted, ignored
