"""Fuzzing the landing contract: whatever the bytes, every line gets exactly one fate.

Hypothesis writes adversarial landing files — arbitrary bytes, near-JSON (trailing commas, NaN,
duplicate keys, BOM, CRLF, NULs, huge lines, wrong types in every field, deep nesting, lone
surrogates), gzip that is cut, damaged, multi-member or not gzip at all, ragged CSV — and checks
for every one: nothing raises, bronze has one row per input line (plus one per file-level fact),
silver + quarantine + duplicates = bronze, every row outside silver has a reason from the
documented vocabulary, the same bytes give the same fates, and a line's fate does not depend on
the lines around it.

`make test` runs the `ci` profile; `python -m bench.fuzz` runs the same properties with the
`long` profile (many more examples) and reports the count in docs/FUZZING.md.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refinery.assets.bronze.ingest import (
    FILE_ERRORS,
    LINE_ERRORS,
    bronze_events_from_file,
    bronze_snapshot_from_file,
    stamp,
)
from refinery.assets.silver.transform import clean_events, clean_snapshot
from refinery.contracts.bronze import EVENT_FIELDS, USER_FIELDS
from refinery.contracts.silver import CONTRACTS, DUPLICATE_REASONS, PARSE_REASONS

settings.register_profile(
    "ci", max_examples=120, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("REFINERY_FUZZ_EXAMPLES", "5000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci: int) -> int:
    """A property's example count: `ci` in make test, scaled up as the loaded profile is."""
    return max(1, ci * settings().max_examples // 120)


ARRIVAL = date(2026, 3, 1)
AT = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
REASONS = (
    set(PARSE_REASONS)
    | set(LINE_ERRORS)
    | set(FILE_ERRORS)
    | {r for c in CONTRACTS.values() for r in c.constraints}
)

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "event_type": "purchase",
    "event_time": "2026-03-01T10:00:00+02:00",
    "product_id": "p1",
    "amount": 12.5,
    "quantity": 2,
    "device": "web",
    "session_id": "s1",
}
ODD_VALUES = [
    "NaN",
    "-Infinity",
    "Infinity",
    "1e400",
    "-1e400",
    "1e308",
    "123456789012345678901234567890",
    "true",
    "false",
    "null",
    "{}",
    "[]",
    '{"a":1}',
    "[1,2]",
    '""',
    '"  "',
    '"\\u0000"',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\"quoted\\""',
    "1.0",
    "-0",
    "0.0",
    "2",
    "-5",
    '"12.5"',
    '"2026-03-01T10:00:00Z"',
    '"PURCHASE"',
    '"caf\u00e9"',
    '"\u2028"',
    "1E2",
    "0e0",
    '{"k":"\\ud800"}',
    '["\\udc00", "\u00e9"]',
    '["\u00e9"]',
    '{"\\ud800":1}',
]


def _obj_text(pairs: list[tuple[str, str]], sep: str = ",") -> str:
    return "{" + sep.join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


@st.composite
def near_json_line(draw) -> bytes:
    """A purchase event, then a few mutations of the kinds upstream systems really send."""
    ids = draw(st.sampled_from(["e1", "e2", "e3", "e4"]))
    pairs = [(k, json.dumps(v)) for k, v in {**GOOD, "event_id": ids}.items()]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(
                ["odd_value", "drop", "dup_key", "extra", "ws_key", "nested_deep", "huge"]
            )
        )
        if kind == "odd_value":
            i = draw(st.integers(0, len(pairs) - 1))
            pairs[i] = (pairs[i][0], draw(st.sampled_from(ODD_VALUES)))
        elif kind == "drop" and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif kind == "dup_key":
            key = draw(st.sampled_from(list(GOOD)))
            pairs.append((key, draw(st.sampled_from([json.dumps(GOOD[key]), *ODD_VALUES]))))
        elif kind == "extra":
            pairs.append((draw(st.text(max_size=8)), draw(st.sampled_from(ODD_VALUES))))
        elif kind == "ws_key" and pairs:
            pairs[0] = (pairs[0][0] + " ", pairs[0][1])
        elif kind == "nested_deep":
            depth = draw(st.sampled_from([3, 600, 1500]))
            pairs.append(("deep", "[" * depth + "]" * depth))
        elif kind == "huge":
            pairs.append(("blob", json.dumps("x" * draw(st.sampled_from([5_000, 200_000])))))
    text = _obj_text(pairs, sep=draw(st.sampled_from([",", ", ", " ,\t"])))
    tail = draw(st.sampled_from(["", "", ",}", " ", "\r", "\x00", "}", "garbage"]))
    if tail == ",}":
        text = text[:-1] + ",}"
    else:
        text += tail
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=4)) + raw[cut:]
    return raw.replace(b"\n", b"")


any_line = st.one_of(
    near_json_line(),
    near_json_line(),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{}", b"[1]", b"null", b'"x"', b"nan", b"{}"]),
)


def lines_of(data: bytes) -> list[bytes]:
    """What counts as a line of a text file: split on newlines, a final newline ends a line."""
    if not data:
        return []
    return (data[:-1] if data.endswith(b"\n") else data).split(b"\n")


@st.composite
def events_file(draw) -> tuple[str, bytes, bytes]:
    """(file name, file bytes, the text the lines must come from)."""
    lines = draw(st.lists(any_line, max_size=25))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    text = newline.join(lines) + (newline if lines and draw(st.booleans()) else b"")
    if draw(st.booleans()):
        text = b"\xef\xbb\xbf" + text
    packing = draw(
        st.sampled_from(
            ["plain", "plain", "gzip", "gzip_multi", "cut", "damaged", "liar", "unnamed_gzip"]
        )
    )
    plain_name = packing in ("plain", "unnamed_gzip")
    name = draw(st.sampled_from(["a.jsonl", "A.JSONL"])) if plain_name else "a.jsonl.gz"
    if packing == "plain" or packing == "liar":
        return name, text, text
    blob = gzip.compress(text, mtime=0)
    if packing == "unnamed_gzip":  # whole gzip under a plain name: read by its content
        return name, blob, text
    if packing == "gzip_multi":
        split = draw(st.integers(0, len(text)))
        blob = gzip.compress(text[:split], mtime=0) + gzip.compress(text[split:], mtime=0)
    elif packing == "cut":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif packing == "damaged":
        at = draw(st.integers(0, max(len(blob) - 1, 0)))
        blob = blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1 :] if blob else blob
    return name, blob, text


def _decompressed(blob: bytes) -> bytes:
    """What a tolerant reader recovers: the decompressible prefix of every member."""
    out, rest = [], blob
    while rest.startswith(b"\x1f\x8b"):
        d = zlib.decompressobj(wbits=31)
        try:
            for i in range(len(rest)):
                out.append(d.decompress(rest[i : i + 1]))
                if d.eof:
                    rest = d.unused_data + rest[i + 1 :]
                    break
            else:
                return b"".join(out)
        except zlib.error:
            return b"".join(out)
    return b"".join(out)


def _read_as(name: str, blob: bytes) -> bytes:
    """What the lines must come from: a .gz file's decompressible prefix; whole gzip under
    another name, decompressed; anything else, its bytes."""
    if not blob.startswith(b"\x1f\x8b"):
        return blob
    if name.lower().endswith(".gz"):
        return _decompressed(blob)
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error):
        return blob


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def _write(tmp: Path, name: str, blob: bytes) -> Path:
    path = tmp / name
    path.write_bytes(blob)
    return path


def _is_file_record(frame: pl.DataFrame) -> pl.Series:
    return frame["_parse_error"].is_in(list(FILE_ERRORS)) & (frame["_raw"] == "")


@given(case=events_file())
def test_any_events_file_gives_every_line_one_fate(tmp_path_factory, case):
    name, blob, _ = case
    tmp = tmp_path_factory.mktemp("fuzz")
    path = _write(tmp, name, blob)
    bronze = bronze_events_from_file(path, name)

    content = _strip_bom(_read_as(name, blob))
    expected_lines = lines_of(content)
    line_rows = bronze.filter(~_is_file_record(bronze))
    assert line_rows.height == len(expected_lines)
    assert line_rows["_line"].to_list() == list(range(1, len(expected_lines) + 1))
    assert set(bronze["_parse_error"].drop_nulls()) <= REASONS
    if not blob:
        assert bronze["_parse_error"].to_list() == ["empty_file"]

    stamped = stamp(bronze, "events", ARRIVAL, AT)
    result = clean_events(stamped)
    assert result.balanced and result.bronze_rows == bronze.height
    assert result.quarantine["quarantine_reason"].null_count() == 0
    assert set(result.quarantine["quarantine_reason"]) <= REASONS
    assert set(result.duplicates["duplicate_reason"]) <= set(DUPLICATE_REASONS)
    # silver holds only finite, typed values
    assert result.silver["amount"].drop_nulls().is_finite().all()
    assert result.silver["event_id"].n_unique() == result.silver.height

    # the same bytes, the same fates
    again = clean_events(stamp(bronze_events_from_file(path, name), "events", ARRIVAL, AT))
    assert again.silver.equals(result.silver)
    assert again.quarantine.equals(result.quarantine)
    assert again.duplicates.equals(result.duplicates)


def _fate(result) -> dict[int, str]:
    fates = {line: "silver" for line in result.silver["_line"]}
    fates |= {line: "silver" for line in result.duplicates["_line"]}  # a copy of a silver row
    fates |= dict(zip(result.quarantine["_line"], result.quarantine["quarantine_reason"]))
    return fates


@settings(max_examples=examples(40))
@given(lines=st.lists(any_line, min_size=1, max_size=12))
def test_a_lines_fate_does_not_depend_on_its_neighbours(tmp_path_factory, lines):
    tmp = tmp_path_factory.mktemp("alone")

    def fates_of(name: str, data: bytes) -> dict[int, str]:
        bronze = bronze_events_from_file(_write(tmp, name, data + b"\n"), "f")
        return _fate(clean_events(stamp(bronze, "events", ARRIVAL, AT)))

    together = fates_of("all.jsonl", b"\n".join(lines))
    for number, single in enumerate(lines, start=1):
        if single.startswith((b"\xef\xbb\xbf", b"\x1f\x8b")):
            continue  # a file's first bytes say BOM or gzip: alone, this line would be read so
        assert fates_of(f"{number}.jsonl", single)[1] == together[number], (number, single)


CSV_CELLS = st.sampled_from(
    [
        "u1",
        "u2",
        "2025-01-01",
        "2026-13-40",
        "DE",
        "XX",
        "de",
        "1990",
        "1899",
        "true",
        "maybe",
        "free",
        "pro",
        "",
        " ",
        '"quoted, cell"',
        '"open',
        'a"b',
        "inf",
        "NaN",
        "1e400",
        "-1",
        "\x00",
        "caf\u00e9",
    ]
)


@st.composite
def users_file(draw) -> bytes:
    header = list(USER_FIELDS)
    if draw(st.integers(0, 4)) == 0:
        header = draw(st.permutations(header))
    if draw(st.integers(0, 6)) == 0:
        header = header[:-1]
    if draw(st.integers(0, 6)) == 0:
        header = [*header, header[0]]
    rows = [
        ",".join(draw(st.lists(CSV_CELLS, min_size=len(header) - 1, max_size=len(header) + 1)))
        for _ in range(draw(st.integers(0, 12)))
    ]
    text = "\n".join([",".join(header), *rows]).encode()
    if draw(st.booleans()):
        text = b"\xef\xbb\xbf" + text
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=3)) + text[cut:]
    return text


@given(blob=users_file())
def test_any_users_csv_gives_every_line_one_fate(tmp_path_factory, blob):
    tmp = tmp_path_factory.mktemp("csv")
    path = _write(tmp, "users.csv", blob)
    bronze = bronze_snapshot_from_file(path, "users.csv", "users")
    records = lines_of(_strip_bom(_read_as("users.csv", blob)))[1:]  # line 1 is the header
    line_rows = bronze.filter(~_is_file_record(bronze))
    assert line_rows["_line"].to_list() == list(range(2, len(records) + 2))
    result = clean_snapshot(stamp(bronze, "users", ARRIVAL, AT), "users")
    assert result.balanced and result.bronze_rows == bronze.height
    assert result.quarantine["quarantine_reason"].null_count() == 0
    assert set(result.quarantine["quarantine_reason"]) <= REASONS
    assert result.silver["user_id"].n_unique() == result.silver.height
    assert set(EVENT_FIELDS) & set(result.silver.columns) == {"user_id"}


csv_cell = st.one_of(
    CSV_CELLS,
    st.text(alphabet=' ,"\t\r\x00\x1c\x1f\u00a0\u3000ab\u00e9', max_size=6),
    st.sampled_from(["x" * 131_073, " " + "y" * 131_071]),  # the csv module's field limit
)


@st.composite
def snapshot_lines(draw) -> tuple[list[str], list[bool], list[str]]:
    """Record lines of a users snapshot near the exporters' shape (cells joined by commas, now
    and then too few or too many, blank, quoted, with characters Python and Rust strip
    differently), each flagged invalid UTF-8 now and then, and a header to judge them by."""
    header = list(USER_FIELDS)
    if draw(st.booleans()):
        header = draw(st.permutations([*header, "extra"]))
    if draw(st.integers(0, 5)) == 0:
        header = header[:-2]
    if draw(st.integers(0, 5)) == 0:
        header = [*header, header[0]]
    width = len(header)
    lines = draw(
        st.lists(
            st.one_of(
                st.lists(csv_cell, min_size=width, max_size=width).map(",".join),
                st.lists(csv_cell, min_size=0, max_size=width + 2).map(",".join),
                st.sampled_from(["", " ", "\t", "\x1c", "\u3000"]),
            ),
            min_size=1,
            max_size=10,
        )
    )
    bad = draw(st.lists(st.integers(0, 9).map(lambda i: i == 0), min_size=len(lines),
                        max_size=len(lines)))  # fmt: skip
    return lines, bad, header


@settings(max_examples=examples(300))
@given(case=snapshot_lines())
def test_column_wise_snapshot_records_give_the_line_by_line_answer(case):
    """The column-wise CSV judge (lines in the simple shape split in Polars) gives, for every
    line, the values, error and detail of the line-by-line one (the csv module's reading)."""
    import numpy as np

    from refinery.assets.bronze.ingest import (
        _snapshot_header,
        snapshot_records,
        snapshot_records_line_by_line,
    )

    lines, bad, header_fields = case
    fields = list(USER_FIELDS)
    header = _snapshot_header(",".join(header_fields), fields)
    flags = np.array(bad, dtype=bool)
    fast = snapshot_records(pl.Series(lines, dtype=pl.String), flags, header, fields)
    reference = snapshot_records_line_by_line(lines, flags, header, fields)
    assert fast.to_dicts() == reference.to_dicts()


json_number = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["-0", "0", "-0.0", "1E2", "1e-99", "9e99", "1e400", "00", "1.", ".5", "+1"]),
)
json_scalar = st.one_of(
    json_number,
    st.text(max_size=6).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(["null", "true", "false", '"a\\"b"', '"\t"', '"x\u00e9"', "[]", "{}"]),
)
blank = st.sampled_from(["", "", " ", "\t", "\r", " \t "])


@st.composite
def flat_object_line(draw) -> bytes:
    """A flat JSON object near the shape producers write: contract keys (sometimes in their
    order, sometimes not, sometimes repeated or joined by others), scalar values of any type,
    blanks between tokens; now and then a broken comma or brace."""
    names = draw(
        st.one_of(
            st.lists(st.sampled_from(EVENT_FIELDS), unique=True).map(
                lambda picked: [f for f in EVENT_FIELDS if f in picked]
            ),
            st.lists(st.sampled_from([*EVENT_FIELDS, "extra"]), max_size=10),
        )
    )
    pairs = [
        draw(blank) + json.dumps(name) + draw(blank) + ":" + draw(blank) + draw(json_scalar)
        + draw(blank)
        for name in names
    ]  # fmt: skip
    separator = draw(st.sampled_from([",", ",", ",", ",,", ""]))
    text = draw(blank) + "{" + separator.join(pairs) + draw(st.sampled_from(["}", "}", ",}", ""]))
    return (text + draw(blank)).encode("utf-8", "surrogatepass").replace(b"\n", b"")


@settings(max_examples=examples(300))
@given(lines=st.lists(st.one_of(any_line, flat_object_line()), min_size=1, max_size=8))
def test_the_fast_path_gives_the_strict_parsers_answer(lines):
    """Most lines are read by orjson inline; that must be exactly what the strict standard-library
    parser with its hooks says, field texts and errors alike."""
    from refinery.assets.bronze.ingest import _event_lines, decode_lines, parse_event_line

    data = b"\n".join(lines) + b"\n"
    frame = _event_lines(data, "f")
    texts, bad = decode_lines(data)
    for row, text, invalid in zip(frame.iter_rows(named=True), texts.to_list(), bad):
        if invalid:
            assert row["_parse_error"] == "invalid_utf8"
            continue
        values, error, detail = parse_event_line(text)  # no fast path
        assert [row[f] for f in EVENT_FIELDS] == values, text
        assert (row["_parse_error"], row["_parse_detail"]) == (error, detail), text


@settings(max_examples=examples(200))
@given(
    lines=st.lists(flat_object_line(), min_size=1, max_size=12),
    newline=st.sampled_from([b"\n", b"\r\n"]),
)
def test_whole_chunks_of_plain_objects_give_the_strict_parsers_answer(lines, newline):
    """Chunks where every line may be plain are read by Polars' readers whole: still exactly the
    strict parser's fields and errors, line for line."""
    from refinery.assets.bronze.ingest import _event_lines, decode_lines, parse_event_line

    data = newline.join(lines) + newline
    frame = _event_lines(data, "f")
    texts, bad = decode_lines(data)
    assert frame.height == len(lines) == len(texts)
    for row, text, invalid in zip(frame.iter_rows(named=True), texts.to_list(), bad):
        values, error, detail = parse_event_line(text)
        if invalid:
            error, detail = "invalid_utf8", LINE_ERRORS["invalid_utf8"]
        assert [row[f] for f in EVENT_FIELDS] == values, text
        assert (row["_parse_error"], row["_parse_detail"]) == (error, detail), text


def reference_lines(data: bytes) -> tuple[list[str], list[bool]]:
    """What the lines of a text file are, said plainly: split on newlines (a final one ends the
    last line), drop one carriage return before each, decode each line with invalid sequences
    replaced, and flag the lines that held one."""
    if not data:
        return [], []
    raw = [line.removesuffix(b"\r") for line in data.removesuffix(b"\n").split(b"\n")]

    def valid(line: bytes) -> bool:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    return [line.decode("utf-8", "replace") for line in raw], [not valid(line) for line in raw]


@settings(max_examples=examples(300))
@given(
    data=st.one_of(
        st.binary(max_size=80),
        st.lists(st.one_of(any_line, flat_object_line(), st.binary(max_size=8)), max_size=6).map(
            b"\n".join
        ),
    ),
    repeat=st.sampled_from([1, 1, 1, 1500]),
)
def test_both_line_decoders_give_the_plain_answer(data, repeat):
    """`decode_lines` hands clean chunks to Polars' line reader, and the marking decoder reads
    bad bytes in C then splits with Polars: for any bytes (small, and large enough for Polars to
    split in parallel) both give the plain reading's lines and flags."""
    from refinery.assets.bronze.ingest import decode_lines, decode_lines_marking_bad_bytes

    if repeat > 1:  # ~1 MB at most: enough for a parallel split, cheap to check
        data = (data + b"\n") * min(repeat, 1_000_000 // (len(data) + 1) + 1)
    expected = reference_lines(data)
    for decode in (decode_lines, decode_lines_marking_bad_bytes):
        lines, bad = decode(data)
        assert (lines.to_list(), bad.tolist()) == expected, decode.__name__
