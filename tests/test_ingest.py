"""Bronze ingest: every line of every file is kept, and bad input is named, never dropped."""

import gzip
from datetime import UTC, date, datetime

import polars as pl
import pytest

from refinery.assets.bronze.ingest import (
    LandingError,
    bronze_events_from_file,
    bronze_snapshot_from_file,
    decode_lines,
    landing_files,
    read_raw,
    stamp,
)
from tests.landing_factory import FAULTY_LINES, USERS_CSV, write_lines


def test_every_line_becomes_one_bronze_row_with_its_parse_error(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [ln for ln, _ in FAULTY_LINES])
    frame = bronze_events_from_file(path, "landing/events/2026-03-01/a.jsonl")
    assert frame.height == len(FAULTY_LINES)
    assert frame["_line"].to_list() == list(range(1, len(FAULTY_LINES) + 1))
    # JSON-level problems are named in bronze (a string where a number belongs included)
    parse_level = {"malformed_json", "invalid_utf8", "not_a_json_object", "invalid_type"}
    expected = [r if r in parse_level else None for _, r in FAULTY_LINES]
    assert frame["_parse_error"].to_list() == expected
    # numbers arrive as their JSON text; extras are kept in the raw line
    assert frame.filter(pl.col("event_id") == "e7")["amount"].item() == "-3.5"
    assert '"coupon_code"' in frame.filter(pl.col("event_id") == "e11")["_raw"].item()


def test_invalid_utf8_is_flagged_on_the_right_line_only():
    data = b'{"a": "ok"}\n{"a": "\xff"}\n{"a": "caf\xc3\xa9"}\n'
    lines, bad = decode_lines(data)
    assert lines.to_list() == ['{"a": "ok"}', '{"a": "\ufffd"}', '{"a": "café"}']
    assert bad.tolist() == [False, True, False]


def test_empty_file_is_one_visible_record(tmp_path):
    path = write_lines(tmp_path / "empty.jsonl", [])
    frame = bronze_events_from_file(path, "empty.jsonl")
    assert frame.select("_line", "_parse_error").rows() == [(0, "empty_file")]


def test_truncated_gzip_keeps_what_decompressed_and_records_the_truncation(tmp_path):
    lines = [f'{{"event_id": "e{i}", "padding": "{"x" * (i % 97)}"}}'.encode() for i in range(3000)]
    blob = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) * 2 // 3])
    assert read_raw(path).truncated
    frame = bronze_events_from_file(path, "cut.jsonl.gz")
    parsed = frame.filter(pl.col("_parse_error").is_null())
    assert 0 < parsed.height < 3000
    assert parsed["event_id"].to_list() == [f"e{i}" for i in range(parsed.height)]
    last = frame.row(-1, named=True)
    assert last["_parse_error"] == "truncated_gzip" and last["_line"] == frame.height


def test_stamp_adds_ingestion_metadata_in_contract_order(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [ln for ln, _ in FAULTY_LINES[:3]])
    at = datetime(2026, 3, 2, 1, tzinfo=UTC)
    frame = stamp(bronze_events_from_file(path, "a.jsonl"), "events", date(2026, 3, 1), at)
    assert frame.columns[0] == "_raw" and frame.columns[-1] == "_arrival_date"
    assert frame["_arrival_date"].unique().to_list() == [date(2026, 3, 1)]
    assert frame.schema["_ingested_at"] == pl.Datetime("us", "UTC")


def test_snapshot_missing_column_is_recorded_on_every_row(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text(
        USERS_CSV.replace(",plan", "").replace(",free", "").replace(",pro", "").replace(",plus", "")
    )
    frame = bronze_snapshot_from_file(path, "users.csv", "users")
    assert frame["_parse_error"].unique().to_list() == ["missing_column"]
    assert "plan" in frame["_parse_detail"][0]
    assert frame["_line"].to_list()[0] == 2  # line 1 is the header


def test_missing_or_wrong_landing_files_name_the_folder_and_what_to_do(tmp_path):
    with pytest.raises(LandingError, match="does not exist.*landing_sensor"):
        landing_files(tmp_path / "events" / "2026-03-01", "events")
    folder = tmp_path / "users" / "2026-03-01"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(LandingError, match=r"users\.csv.*notes\.txt"):
        landing_files(folder, "users")
    empty = folder / "users.csv"
    empty.write_text("")
    # an empty snapshot is a row, not a crash: silver's snapshot_volume check stops the line
    frame = bronze_snapshot_from_file(empty, "users.csv", "users")
    assert frame.select("_line", "_parse_error").rows() == [(0, "empty_file")]
    listed = landing_files(folder, "users")
    assert [p.name for p in listed.read] == ["users.csv"]
    assert [p.name for p in listed.unsupported] == ["notes.txt"]


def test_chunked_parsing_gives_the_same_rows_as_one_pass(tmp_path):
    from refinery.assets.bronze.ingest import bronze_event_parts, line_chunks

    lines = [ln for ln, _ in FAULTY_LINES] * 7
    path = write_lines(tmp_path / "a.jsonl", lines)
    whole = pl.concat(list(bronze_event_parts(path, "a.jsonl", chunk_bytes=1 << 30)))
    chunked_parts = list(bronze_event_parts(path, "a.jsonl", chunk_bytes=300))
    assert len(chunked_parts) > 5
    assert pl.concat(chunked_parts).equals(whole)
    assert whole["_line"].to_list() == list(range(1, len(lines) + 1))
    data = path.read_bytes()
    pieces = list(line_chunks(data, 300))
    assert b"".join(c for _, c in pieces) == data
    assert all(c.endswith(b"\n") for _, c in pieces)


def test_bytes_that_only_start_like_gzip_are_read_as_lines(tmp_path):
    """Found by the long fuzz run: a users.csv beginning with 1f 8b lost all its lines."""
    path = tmp_path / "users.csv"
    path.write_bytes(b"\x1f\x8buser_id,signup_date\nu1,2025-01-01\n")
    frame = bronze_snapshot_from_file(path, "users.csv", "users")
    assert frame["_line"].to_list() == [2]
    whole = tmp_path / "a.jsonl"
    whole.write_bytes(gzip.compress(b'{"event_id": "e1"}\n', mtime=0))  # gzip without .gz
    frame = bronze_events_from_file(whole, "a.jsonl")
    assert frame.select("_line", "_parse_error").rows() == [(0, "misnamed_file"), (1, None)]
