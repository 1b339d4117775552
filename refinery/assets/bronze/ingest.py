"""Reading landed files into bronze frames without losing a line.

The parser is total: whatever the bytes, every line of every landing file becomes exactly one
bronze row, and what happens to a line depends on that line alone. A line that is a JSON object
whose contract fields have the contract's JSON types gets its fields as text; any other line
keeps its raw text and a machine-readable `_parse_error` (see `LINE_ERRORS`). File-level facts
(an empty file, a gzip stream cut short, a file that is not what its name says, a file refinery
does not read) become one extra row with `_line = 0` (before the first line) or the line after
the last, so they are visible downstream and counted in the accounting invariant.

JSON is parsed strictly (RFC 8259): no NaN/Infinity, no trailing commas, numbers that overflow a
double are `non_finite_number`, a key twice in one object is `duplicate_key`. Lines in the shape
exporters write (`SIMPLE_OBJECT`: a flat object of contract keys in order, no escapes) are read
column-wise by Polars in Rust, which for such a line can only be the strict parser's answer; the
others one at a time, through orjson where its result is provably the strict parser's, else the
standard library's parser with hooks that name each problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from refinery.contracts.bronze import BRONZE_CONTRACTS, EVENT_FIELDS, SOURCE_FIELDS

EVENT_SUFFIXES = (".jsonl", ".jsonl.gz")
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"

# JSON type each event field must have when present (null is "absent").
_NUMBER_FIELDS = {"amount", "quantity"}
EXPECTED_JSON_TYPE = {f: ("number" if f in _NUMBER_FIELDS else "string") for f in EVENT_FIELDS}

# Why a line did not become a typed row, decided in bronze (silver adds the contract's reasons).
LINE_ERRORS = {
    "invalid_utf8": "line holds bytes that are not valid UTF-8",
    "empty_line": "line is empty or only white space",
    "malformed_json": "line is not valid JSON",
    "non_finite_number": "a number is NaN, Infinity or too large for a double",
    "duplicate_key": "an object names the same key twice",
    "not_a_json_object": "line is JSON but not an object",
    "invalid_type": "a contract field has the wrong JSON type",
    "malformed_csv": "line is not a valid CSV record",
    "wrong_field_count": "CSV record has a different number of fields than the header",
}
# Facts about a whole file, recorded as one extra row (`_line` 0, or after its last line).
FILE_ERRORS = {
    "empty_file": "file has no bytes (or decompresses to none)",
    "truncated_gzip": "gzip stream ends before its end (the lines before the cut are kept)",
    "corrupt_gzip": "gzip stream is damaged (the lines before the damage are kept)",
    "misnamed_file": "file content does not match its name (read by its content)",
    "unsupported_file": "file of a kind refinery does not read for this source",
    "duplicate_column": "CSV header names a column twice",
    "missing_column": "CSV header lacks a contract column",
}


class LandingError(Exception):
    """A landing problem no row can represent: the user must act (re-deliver, fix the export)."""


@dataclass
class RawFile:
    """A landing file's decoded bytes and the file-level facts found reading it."""

    data: bytes
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file error, detail)

    @property
    def truncated(self) -> str | None:  # kept for callers that only ask "was it cut?"
        cut = [d for e, d in self.problems if e in ("truncated_gzip", "corrupt_gzip")]
        return cut[0] if cut else None


def _inflate(data: bytes, step: int = 1 << 16) -> tuple[list[bytes], int, object, str | None]:
    """Decompress one gzip member from the start of `data`: (output, bytes fed, decompressor,
    zlib error or None). zlib returns nothing of a step that fails, so the state before each
    step is kept and a failing step is fed again byte by byte: all that precedes the damage is
    recovered."""
    decomp = zlib.decompressobj(wbits=31)
    out: list[bytes] = []
    fed = 0
    while fed < len(data) and not decomp.eof:
        chunk = data[fed : fed + step]
        before = decomp.copy()
        try:
            out.append(decomp.decompress(chunk))
        except zlib.error as exc:
            decomp = before
            for k in range(len(chunk)):
                try:
                    out.append(decomp.decompress(chunk[k : k + 1]))
                except zlib.error:
                    break
            return out, fed, decomp, str(exc)
        fed += len(chunk)
    return out, fed, decomp, None


def gunzip(blob: bytes) -> tuple[bytes, tuple[str, str] | None]:
    """Every member of a (possibly multi-member) gzip stream; on damage, every byte that
    decompressed before it plus (file error, detail)."""
    out: list[bytes] = []
    rest, members = blob, 0
    while rest:
        if not rest.startswith(GZIP_MAGIC):
            return b"".join(out), (
                "corrupt_gzip",
                f"{len(rest)} byte(s) after gzip member {members} are not gzip data",
            )
        parts, fed, decomp, error = _inflate(rest)
        out.extend(parts)
        if error:
            return b"".join(out), ("corrupt_gzip", f"gzip member {members + 1}: {error}")
        if not decomp.eof:
            return b"".join(out), (
                "truncated_gzip",
                f"gzip member {members + 1} ends before its end-of-stream marker (file cut short)",
            )
        members += 1
        rest = decomp.unused_data + rest[fed:]
    return b"".join(out), None


def read_raw(path: Path) -> RawFile:
    """The file's text bytes, by content: a `.gz` file is decompressed (what precedes damage is
    kept), and so is whole gzip under another name; a `.gz` name on plain bytes is noted and the
    bytes are read as they are; a leading UTF-8 BOM is dropped."""
    blob = path.read_bytes()
    named_gz = path.name.lower().endswith(".gz")
    problems: list[tuple[str, str]] = []
    if not blob:
        return RawFile(b"", [("empty_file", "file has no bytes")])
    if blob.startswith(GZIP_MAGIC) and not named_gz:
        # Content that starts like gzip in a file not named so: decompressed only when it is
        # whole gzip; otherwise its bytes are read as the lines they are.
        text, problem = gunzip(blob)
        if problem is None:
            problems.append(("misnamed_file", f"{path.name} is gzip-compressed; decompressed"))
            blob = text
            if not blob:
                problems.append(("empty_file", "gzip stream decompresses to no bytes"))
    elif blob.startswith(GZIP_MAGIC):
        blob, problem = gunzip(blob)
        if problem:
            problems.append(problem)
        elif not blob:
            problems.append(("empty_file", "gzip stream decompresses to no bytes"))
    elif named_gz:
        problems.append(("misnamed_file", f"{path.name} is not gzip data; read as plain text"))
    blob = blob.removeprefix(UTF8_BOM)
    return RawFile(blob, problems)


_bad_utf8 = threading.local()


def _record_bad_utf8(err: UnicodeDecodeError):
    _bad_utf8.offsets.append(err.start)
    return ("\ufffd", err.end)


# The handler's name is global to the interpreter, its notes this module's: the name carries the
# module's identity, so a second copy of this module (a benchmark loads an older one) keeps its own.
_MARK_BAD_UTF8 = f"refinery_record_bad_utf8_{id(_bad_utf8):x}"
codecs.register_error(_MARK_BAD_UTF8, _record_bad_utf8)


_JSON_STARTS = (b"{", b" ", b"\t")


def decode_lines(data: bytes) -> tuple[pl.Series, np.ndarray]:
    """Split into lines (without `\\n` / `\\r\\n` endings) and flag the lines that held invalid
    UTF-8. No bytes, no lines; a final newline ends the last line rather than starting one.

    Valid UTF-8 that starts like JSON (nearly every chunk) is split by Polars' line reader in
    Rust; any other chunk is decoded by `decode_lines_marking_bad_bytes`, whose answer is the
    same wherever both read. (Polars' readers decompress bytes that begin with a compression
    magic number, so they only see chunks beginning with `{` or a blank.)
    """
    if not data:
        return pl.Series("_raw", [], dtype=pl.String), np.zeros(0, dtype=bool)
    if data[:1] not in _JSON_STARTS:
        return decode_lines_marking_bad_bytes(data)
    try:
        lines = pl.read_lines(data, name="_raw").get_column("_raw")
    except pl.exceptions.ComputeError:  # invalid UTF-8 somewhere in the chunk
        return decode_lines_marking_bad_bytes(data)
    if lines.str.contains("\ufffd", literal=True).any():
        # Polars refuses invalid UTF-8; should it ever replace it instead, the replacement
        # character shows, and the marking decoder says which lines were bad
        return decode_lines_marking_bad_bytes(data)
    return lines, np.zeros(lines.len(), dtype=bool)


def decode_lines_marking_bad_bytes(data: bytes) -> tuple[pl.Series, np.ndarray]:
    """`decode_lines` for bytes that may hold invalid UTF-8: each invalid sequence becomes U+FFFD
    (one decoding pass in C whose error handler, run only on bad bytes, notes where they were)
    and the lines that held one are flagged. A replacement never spans a newline, so the lines
    are those of the bytes."""
    if not data:
        return pl.Series("_raw", [], dtype=pl.String), np.zeros(0, dtype=bool)
    _bad_utf8.offsets = []
    text = data.decode("utf-8", errors=_MARK_BAD_UTF8)
    offsets = _bad_utf8.offsets
    lines = pl.read_lines(b"\n" + text.encode(), name="_raw").get_column("_raw")[1:]
    # ("\n" first: Polars would read bytes that begin like compressed data as compressed)
    bad = np.zeros(lines.len(), dtype=bool)
    line, previous = 0, 0
    for offset in offsets:  # ascending; counting newlines between them reads the bytes once
        line += data.count(b"\n", previous, offset)
        previous = offset
        bad[line] = True
    return lines, bad


# --- strict JSON, one line at a time -----------------------------------------------------------


class _LineProblem(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error, self.detail = error, detail


class _BigInt(str):
    """An integer literal too long for the fast path, kept as written."""


def _no_constants(name: str):
    raise _LineProblem("non_finite_number", f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _LineProblem("non_finite_number", f"{literal[:40]} overflows a double")
    return value


def _int(literal: str):
    return int(literal) if len(literal) <= 18 else _BigInt(literal)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _LineProblem("duplicate_key", f"key {repeated[:60]!r} appears more than once")
    return obj


_STRICT = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_float=_finite_float,
    parse_int=_int,
    parse_constant=_no_constants,
)


def strict_json(line: str):
    """The line's JSON value, or `_LineProblem` naming why it is not strict JSON."""
    try:
        return _STRICT.decode(line)
    except _LineProblem:
        raise
    except json.JSONDecodeError as exc:
        raise _LineProblem("malformed_json", f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        raise _LineProblem("malformed_json", "not valid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise _LineProblem("malformed_json", f"not valid JSON: {str(exc)[:120]}")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "number" if isinstance(value, _BigInt) else "string"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _as_text(value) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate inside: escaped, so the text stays valid UTF-8
        return json.dumps(value, separators=(",", ":"))


def event_fields(
    obj: dict, may_hold_surrogates: bool = True
) -> tuple[list[str | None], tuple[str, str] | None]:
    """Contract fields of a parsed object as text, and the first JSON-type problem.

    The standard library decodes a `\\ud800` escape to a lone surrogate, which no UTF-8 column
    can hold: such a value is replaced and the line is `invalid_utf8` (orjson rejects those
    escapes itself, so its results skip the check)."""
    values: list[str | None] = []
    problem = None
    for name in EVENT_FIELDS:
        value = obj.get(name)
        if value is None:
            values.append(None)
            continue
        kind = _json_type(value)
        text = _as_text(value)
        lone_surrogate = may_hold_surrogates and not _encodable(text)
        if lone_surrogate:
            text = text.encode("utf-8", "replace").decode()
        if problem is None:
            if kind != EXPECTED_JSON_TYPE[name]:
                problem = (
                    "invalid_type",
                    f"{name} is a JSON {kind} ({text[:60]}); expected a {EXPECTED_JSON_TYPE[name]}",
                )
            elif lone_surrogate:
                problem = ("invalid_utf8", f"{name} holds a lone surrogate escape")
        values.append(text)
    return values, problem


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_event_line(line: str, fast_ok: bool = False, key_count: int = -1):
    """(field texts, error, detail) of one line; the same line always gives the same answer.

    `fast_ok` and `key_count` come from `_fast_path_hints`: a line with no backslash and no
    19-digit run, and how many `"…":` key terminators it holds. Only then is orjson's (equally
    strict) result taken, and only when its object has as many keys as the line names (else a
    key repeats, or an object nests: the hooks decide)."""
    if not line.strip():
        return [None] * len(EVENT_FIELDS), "empty_line", LINE_ERRORS["empty_line"]
    obj = None
    if fast_ok:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict and len(obj) == key_count:
            values, problem = event_fields(obj, may_hold_surrogates=False)
            return (values, *problem) if problem else (values, None, None)
        obj = None
    if obj is None:
        try:
            obj = strict_json(line)
        except _LineProblem as problem:
            return [None] * len(EVENT_FIELDS), problem.error, problem.detail
    if not isinstance(obj, dict):
        kind = "null" if obj is None else _json_type(obj)
        detail = f"line is a JSON {kind}, not an object"
        return [None] * len(EVENT_FIELDS), "not_a_json_object", detail
    values, problem = event_fields(obj)
    return (values, *problem) if problem else (values, None, None)


def _fast_path_hints(lines: pl.Series) -> tuple[list[bool], list[int]]:
    hints = pl.DataFrame({"l": lines}).select(
        ok=~pl.col("l").str.contains("\\", literal=True) & ~pl.col("l").str.contains(r"[0-9]{19}"),
        keys=pl.col("l").str.count_matches(r'"[ \t\r\n]*:'),
    )
    return hints["ok"].fill_null(False).to_list(), hints["keys"].fill_null(-1).to_list()


_STRING_OK = frozenset({str, type(None)})
assert EVENT_FIELDS == (
    "event_id",
    "user_id",
    "event_type",
    "event_time",
    "product_id",
    "amount",
    "quantity",
    "device",
    "session_id",
), "the fast path below unpacks the fields in this order"


def _number_text(value, kind) -> str | None:
    if kind is float:
        return repr(value)
    return None if value is None else str(value)


def _event_lines(data: bytes, source_file: str, first_line: int = 1) -> pl.DataFrame:
    """Bronze rows of a chunk of lines: the lines `_simple_objects` proves plain are read column
    by column in Rust; every other line goes through `_line_by_line`, which names its problem."""
    lines, bad_utf8 = decode_lines(data)
    simple = _simple_objects(lines, bad_utf8, data)
    rest = np.ones(lines.len(), dtype=bool)
    rest[simple.get_column("_i").to_numpy()] = False
    others = np.flatnonzero(rest)
    fields = simple
    if others.size:
        slow = _line_by_line(lines.gather(others), bad_utf8[others])
        slow = slow.with_columns(_i=pl.Series(others, dtype=pl.UInt32))
        fields = (
            pl.concat([simple, slow.select(simple.columns)]).sort("_i") if simple.height else slow
        )
    frame = pl.concat(
        [pl.DataFrame({"_raw": lines}), fields.drop("_i")], how="horizontal"
    ).with_columns(
        _source_file=pl.lit(source_file),
        _line=pl.int_range(first_line, first_line + lines.len(), dtype=pl.Int64),
    )
    return frame.select(list(_schema("events", False)))


# A line that is one flat JSON object whose keys are contract fields, each at most once and in
# the contract's order, string fields holding a string without escapes or control characters (or
# null), number fields a number literal (or null), with only spaces and tabs between tokens. Such a
# line has one reading: every strict parser gives the same object, so its fields can be cut out
# column-wise. The grammar is exact (an alternative per first key, then each later key optional
# after a comma), so a missing or doubled comma, a trailing comma or an escape does not match.
_WS = r"[ \t]*"
_JSON_STRING = r'"[^"\\\x00-\x1f]*"'
# JSON's number grammar, with at most 18 digits before and after the point and a two-digit
# exponent: every such literal is a finite double that Polars' reader parses (it refuses some
# longer ones, even in fields it does not keep); longer numbers go line by line.
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,18})?(?:[eE][+-]?[0-9]{1,2})?"
_STRING_FIELDS = [f for f in EVENT_FIELDS if f not in _NUMBER_FIELDS]
_NUMBER_FIELDS_IN_ORDER = [f for f in EVENT_FIELDS if f in _NUMBER_FIELDS]


def _simple_object_pattern() -> str:
    pairs = [
        f'"{name}"{_WS}:{_WS}(?:{_JSON_NUMBER if name in _NUMBER_FIELDS else _JSON_STRING}|null)'
        f"{_WS}"
        for name in EVENT_FIELDS
    ]
    firsts = [
        pair + "".join(f"(?:,{_WS}{later})?" for later in pairs[i + 1 :])
        for i, pair in enumerate(pairs)
    ]
    return f"^{_WS}\\{{{_WS}(?:{'|'.join(firsts)})?\\}}{_WS}$"


SIMPLE_OBJECT = _simple_object_pattern()
_INTEGER = r"^-?[0-9]+$"


def _simple_objects(lines: pl.Series, bad_utf8: np.ndarray, data: bytes) -> pl.DataFrame:
    """`_i` (the line's index) and the contract fields as text of every line matching
    `SIMPLE_OBJECT`. The texts are the strict parser's: a string as written, an integer as
    written (`-0` is `0`), any other number `repr(float(literal))`. Should Polars' NDJSON reader
    refuse the lines after all, none is taken here and all go line by line (same answer)."""
    frame = (
        pl.DataFrame({"l": lines, "ok": ~bad_utf8})
        .with_row_index("_i")
        .filter(pl.col("ok") & pl.col("l").str.contains(SIMPLE_OBJECT))
        .select(
            "_i",
            "l",
            *[
                pl.col("l").str.extract(f'"{name}"{_WS}:{_WS}({_JSON_NUMBER}|null)', 1).alias(name)
                for name in _NUMBER_FIELDS_IN_ORDER
            ],
        )
    )
    columns = ["_i", *EVENT_FIELDS, "_parse_error", "_parse_detail"]
    empty = pl.DataFrame(schema={c: pl.UInt32 if c == "_i" else pl.String for c in columns})
    if frame.height == 0:
        return empty
    for name in _NUMBER_FIELDS_IN_ORDER:
        literals = frame.get_column(name)
        floats = literals.filter(~literals.str.contains(_INTEGER) & (literals != "null"))
        texts = {value: repr(float(value)) for value in floats.unique().to_list()}
        literal = pl.col(name)
        frame = frame.with_columns(
            pl.when(literal.is_null() | (literal == "null"))
            .then(None)
            .when(literal.str.contains(_INTEGER))
            .then(pl.when(literal == "-0").then(pl.lit("0")).otherwise(literal))
            .otherwise(literal.replace_strict(texts, return_dtype=pl.String))
            .alias(name)
        )
    if frame.height == lines.len() and data[:1] in _JSON_STARTS and b"\r" not in data:
        # `lines` are this chunk's lines, every one simple: the chunk is read as it is (it starts
        # like JSON, so the reader cannot take it for compressed data)
        ndjson = data
    else:
        ndjson = frame.get_column("l").str.join("\n").item().encode()
    try:
        strings = pl.read_ndjson(io.BytesIO(ndjson), schema={f: pl.String for f in _STRING_FIELDS})
    except pl.exceptions.PolarsError:
        return empty
    if strings.height != frame.height:  # one object per line, or none of them is taken here
        return empty
    return pl.concat(
        [frame.select("_i", *_NUMBER_FIELDS_IN_ORDER), strings], how="horizontal"
    ).select(
        pl.col("_i").cast(pl.UInt32),
        *EVENT_FIELDS,
        _parse_error=pl.lit(None, dtype=pl.String),
        _parse_detail=pl.lit(None, dtype=pl.String),
    )


def _line_by_line(lines: pl.Series, bad_utf8: np.ndarray) -> pl.DataFrame:
    """The contract fields, `_parse_error` and `_parse_detail` of each line, one at a time. An
    orjson object whose contract fields all have their JSON types is unpacked inline (no call
    per field); every other line goes through `parse_event_line`, which gives the same result
    for these and names the problem for the rest."""
    fast, keys = _fast_path_hints(lines)
    columns: list[list[str | None]] = [[] for _ in EVENT_FIELDS]
    c_id, c_user, c_type, c_time, c_product, c_amount, c_quantity, c_device, c_session = columns
    errors: list[str | None] = []
    details: list[str | None] = []
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for i, line in enumerate(lines.to_list()):
        if fast[i] and not bad_utf8[i]:
            try:
                obj = loads(line)
            except decode_error:
                obj = None
            if type(obj) is dict and len(obj) == keys[i]:
                get = obj.get
                texts = (
                    get("event_id"),
                    get("user_id"),
                    get("event_type"),
                    get("event_time"),
                    get("product_id"),
                    get("device"),
                    get("session_id"),
                )
                amount, quantity = get("amount"), get("quantity")
                amount_kind, quantity_kind = type(amount), type(quantity)
                if (
                    _STRING_OK.issuperset(map(type, texts))
                    and (amount_kind is float or amount_kind is int or amount is None)
                    and (quantity_kind is int or quantity_kind is float or quantity is None)
                ):
                    c_id.append(texts[0])
                    c_user.append(texts[1])
                    c_type.append(texts[2])
                    c_time.append(texts[3])
                    c_product.append(texts[4])
                    c_amount.append(_number_text(amount, amount_kind))
                    c_quantity.append(_number_text(quantity, quantity_kind))
                    c_device.append(texts[5])
                    c_session.append(texts[6])
                    errors.append(None)
                    details.append(None)
                    continue
        values, error, detail = parse_event_line(line, fast[i], keys[i])
        if bad_utf8[i]:
            error, detail = "invalid_utf8", LINE_ERRORS["invalid_utf8"]
        for column, value in zip(columns, values):
            column.append(value)
        errors.append(error)
        details.append(detail)
    return _judged_lines(EVENT_FIELDS, columns, errors, details)


def _judged_lines(
    fields: list[str], columns: list[list], errors: list, details: list
) -> pl.DataFrame:
    """What a line-by-line judge found: each field's texts, `_parse_error`, `_parse_detail`."""
    return pl.DataFrame(
        {
            **{f: pl.Series(f, col, dtype=pl.String) for f, col in zip(fields, columns)},
            "_parse_error": pl.Series(errors, dtype=pl.String),
            "_parse_detail": pl.Series(details, dtype=pl.String),
        }
    )


def file_record(table: str, source_file: str, line: int, error: str, detail: str) -> pl.DataFrame:
    """One bronze row that stands for a fact about a whole file."""
    schema = _schema(table, False)
    row = {name: None for name in schema}
    row |= {"_raw": "", "_parse_error": error, "_parse_detail": detail}
    row |= {"_source_file": source_file, "_line": line}
    return pl.DataFrame([row], schema=schema)


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

    Without `_ingested_at`/`_arrival_date`. File-level records: a name that lies about the
    content comes first (`_line` 0); an empty file is one record at 0; a damaged gzip stream
    is recorded after the last line that decompressed.
    """
    raw = read_raw(path)
    lines_seen = 0
    for error, detail in raw.problems:
        if error in ("misnamed_file", "empty_file"):
            yield file_record("events", source_file, 0, error, detail)
    for first_line, chunk in line_chunks(raw.data, chunk_bytes):
        frame = _event_lines(chunk, source_file, first_line)
        lines_seen = first_line - 1 + frame.height
        yield frame
    for error, detail in raw.problems:
        if error in ("truncated_gzip", "corrupt_gzip"):
            yield file_record("events", source_file, lines_seen + 1, error, detail)


def bronze_events_from_file(path: Path, source_file: str) -> pl.DataFrame:
    """One events landing file → bronze rows (without `_ingested_at`/`_arrival_date`)."""
    parts = list(bronze_event_parts(path, source_file))
    return pl.concat(parts) if parts else _empty("events")


def _empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=_schema(table, False))


def _csv_record(line: str) -> list[str]:
    """One physical line as a CSV record (RFC 4180 quoting); csv.Error when it is not one."""
    return next(csv.reader([line], strict=True))


@dataclass(frozen=True)
class _Header:
    """A snapshot's header line, as the records are judged against it."""

    width: int  # fields in the header, extra columns included
    position: dict[str, int]  # where each contract column is
    error: tuple[str, str] | None  # missing_column / duplicate_column, marking every record


def _snapshot_header(text: str, fields: list[str]) -> _Header:
    try:
        header = [name.strip().lower() for name in _csv_record(text)]
    except (csv.Error, StopIteration):
        header = []
    missing = [f for f in fields if f not in header]
    doubled = sorted({f for f in fields if header.count(f) > 1})
    error = None
    if doubled:
        error = ("duplicate_column", f"header names {', '.join(doubled)} more than once")
    elif missing:
        error = ("missing_column", f"snapshot lacks column(s): {', '.join(missing)}")
    return _Header(len(header), {f: header.index(f) for f in fields if f in header}, error)


def _snapshot_record(
    number: int, text: str, bad_utf8: bool, header: _Header, fields: list[str]
) -> tuple[list[str | None], str | None, str | None]:
    """One record line (line `number` of the file): its contract values, error and detail."""
    values: list[str | None] = [None] * len(fields)
    if bad_utf8:
        return values, "invalid_utf8", LINE_ERRORS["invalid_utf8"]
    if not text.strip():
        return values, "empty_line", LINE_ERRORS["empty_line"]
    try:
        record = _csv_record(text)
    except (csv.Error, StopIteration) as exc:
        return values, "malformed_csv", f"line {number} is not valid CSV: {exc}"
    if len(record) != header.width:
        detail = f"line {number} has {len(record)} field(s), the header has {header.width}"
        return values, "wrong_field_count", detail
    values = [record[header.position[f]].strip() if f in header.position else None for f in fields]
    error, detail = header.error or (None, None)
    return values, error, detail


def snapshot_records_line_by_line(
    texts: list[str],
    bad_utf8: np.ndarray,
    header: _Header,
    fields: list[str],
    numbers: list[int] | None = None,
) -> pl.DataFrame:
    """Record lines judged one at a time: the reference `snapshot_records` equals, and what it
    does for the lines outside its fast shape. `texts` are the file's lines after the header,
    or those numbered `numbers` (line 1 is the header)."""
    columns: list[list[str | None]] = [[] for _ in fields]
    errors: list[str | None] = []
    details: list[str | None] = []
    numbers = numbers if numbers is not None else list(range(2, len(texts) + 2))
    for number, text, bad in zip(numbers, texts, bad_utf8.tolist()):
        values, error, detail = _snapshot_record(number, text, bad, header, fields)
        for column, value in zip(columns, values):
            column.append(value)
        errors.append(error)
        details.append(detail)
    return _judged_lines(fields, columns, errors, details)


# A record line the csv module reads as `line.split(",")`: no quote (the only way a field holds
# a comma, or a quote is an error), no line-break or NUL character (Pythons before 3.11 refuse
# NUL), nothing Python's str.strip() strips that Rust's does not (\x1c-\x1f are white space to
# Python only), and no field the csv module would refuse as longer than its field size limit.
_NOT_SIMPLE_CSV = r'["\r\n\x00\x1c-\x1f]'


def snapshot_records(
    lines: pl.Series, bad_utf8: np.ndarray, header: _Header, fields: list[str]
) -> pl.DataFrame:
    """`snapshot_records_line_by_line`, column-wise in Polars for the lines in the simple shape
    (nearly every line an exporter writes), line by line for the others."""
    n = lines.len()
    frame = pl.DataFrame({"text": lines, "bad": pl.Series(bad_utf8, dtype=pl.Boolean)})
    limit = csv.field_size_limit()
    text = pl.col("text")
    simple = (
        ~pl.col("bad")
        & ~text.str.contains(_NOT_SIMPLE_CSV)
        & (text.str.len_chars() <= limit)
        & (text.str.strip_chars() != "")
    )
    parsed = frame.with_columns(simple=simple, record=text.str.split(","))
    count = pl.col("record").list.len()
    fits = count == header.width
    number = pl.int_range(2, n + 2, dtype=pl.Int64)
    error, detail = header.error or (None, None)
    fast = parsed.select(
        "simple",
        *[
            pl.when(fits)
            .then(pl.col("record").list.get(header.position[f]).str.strip_chars())
            .alias(f)
            if f in header.position
            else pl.lit(None, dtype=pl.String).alias(f)
            for f in fields
        ],
        _parse_error=pl.when(~fits)
        .then(pl.lit("wrong_field_count"))
        .otherwise(pl.lit(error, dtype=pl.String)),
        _parse_detail=pl.when(~fits)
        .then(
            pl.format(f"line {{}} has {{}} field(s), the header has {header.width}", number, count)
        )
        .otherwise(pl.lit(detail, dtype=pl.String)),
    )
    others = np.flatnonzero(~fast.get_column("simple").to_numpy())
    fast = fast.drop("simple")
    if len(others) == 0:
        return fast
    slow = snapshot_records_line_by_line(
        lines.gather(others).to_list(), bad_utf8[others], header, fields, (others + 2).tolist()
    )
    index = pl.Series(others, dtype=pl.Int64)
    return fast.with_columns(
        [fast.get_column(c).scatter(index, slow.get_column(c)) for c in fast.columns]
    )


def bronze_snapshot_from_file(path: Path, source_file: str, table: str) -> pl.DataFrame:
    """A CRM/catalogue CSV snapshot → bronze rows, judged line by line, every value as text.

    Line 1 is the header (column names are trimmed and lower-cased; extra columns are ignored).
    Each later line is one record: a line that is not valid CSV, holds invalid UTF-8, or has a
    different number of fields than the header keeps its raw text and its reason. A header that
    lacks a contract column, or names one twice, marks every row (`missing_column`,
    `duplicate_column`) so silver quarantines the snapshot with that reason. An empty file is one
    `empty_file` record. A record never spans lines: a quoted field with a line break in it
    makes both halves `malformed_csv`. What happens to a line depends on that line (and the
    header) alone; lines in the shape exporters write are judged column-wise
    (`snapshot_records`), with the answer of the line-by-line judge.
    """
    fields = list(SOURCE_FIELDS[table])
    raw = read_raw(path)
    records = [file_record(table, source_file, 0, e, d) for e, d in raw.problems]
    lines, bad_utf8 = decode_lines(raw.data)
    if lines.len() == 0:
        return pl.concat(records) if records else _empty(table)
    header = _snapshot_header(lines[0], fields)
    body = lines.slice(1)
    frame = pl.concat(
        [
            body.alias("_raw").to_frame(),
            snapshot_records(body, bad_utf8[1:], header, fields),
        ],
        how="horizontal",
    ).with_columns(
        _source_file=pl.lit(source_file),
        _line=pl.int_range(2, lines.len() + 1, dtype=pl.Int64),  # line 1 is the header
    )
    return pl.concat([*records, frame.select(list(_schema(table, False)))])


def unsupported_file_record(table: str, path: Path, source_file: str) -> pl.DataFrame:
    expected = "*.jsonl or *.jsonl.gz" if table == "events" else f"{table}.csv"
    return file_record(
        table,
        source_file,
        0,
        "unsupported_file",
        f"{path.name} is not a {table} export refinery reads (expected {expected}); "
        f"its {path.stat().st_size} byte(s) were not ingested",
    )


def _schema(table: str, with_meta: bool) -> dict:
    cols = BRONZE_CONTRACTS[table].columns
    drop = set() if with_meta else {"_ingested_at", "_arrival_date"}
    return {c.name: c.dtype for c in cols if c.name not in drop}


def stamp(
    frame: pl.DataFrame, table: str, arrival_date: date, ingested_at: datetime
) -> pl.DataFrame:
    """Add ingestion metadata and put columns in contract order and types."""
    ingested_at = ingested_at.astimezone(UTC)
    frame = frame.with_columns(
        _ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        _arrival_date=pl.lit(arrival_date, dtype=pl.Date),
    )
    return frame.select([pl.col(n).cast(t) for n, t in _schema(table, with_meta=True).items()])


@dataclass(frozen=True)
class LandingFolder:
    """What a landing folder holds, by what refinery does with each entry."""

    read: list[Path]  # the source's exports, ingested line by line
    unsupported: list[Path]  # other files: one `unsupported_file` bronze row each
    skipped: list[Path]  # hidden files (in-flight uploads) and sub-folders: named in a check


def is_export(path: Path, table: str) -> bool:
    name = path.name.lower()
    if table == "events":
        return name.endswith(EVENT_SUFFIXES)
    return path.name == f"{table}.csv"


def landing_files(landing_dir: Path, table: str) -> LandingFolder:
    """Sort a landing folder's entries by name into read / unsupported / skipped.

    Raises `LandingError` only where no row can stand for the problem: the folder is missing or
    empty, or a snapshot's CSV (which the contract requires) is not there.
    """
    if not landing_dir.is_dir():
        raise LandingError(
            f"no {table} landed for this date: {landing_dir} does not exist. Wait for the upstream "
            f"export (the landing_sensor starts this partition when it arrives) or re-deliver it."
        )
    entries = sorted(landing_dir.iterdir())
    files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    skipped = [p for p in entries if p not in files]
    read = [p for p in files if is_export(p, table)]
    unsupported = [p for p in files if p not in read]
    if not files or (table != "events" and not read):
        expected = "*.jsonl or *.jsonl.gz" if table == "events" else f"{table}.csv"
        raise LandingError(
            f"no {table} file in {landing_dir} (expected {expected}; found "
            f"{[p.name for p in entries] or 'nothing'}). Re-deliver the export, then re-run."
        )
    return LandingFolder(read, unsupported, skipped)
