"""Silver transforms: every bad input gets its reason, and the accounting always balances."""

import itertools
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from refinery.assets.bronze.ingest import (
    bronze_events_from_file,
    bronze_snapshot_from_file,
    stamp,
)
from refinery.assets.silver.assets import HELD_SILVER_BYTES, write_silver_events
from refinery.assets.silver.event_index import prior_rows
from refinery.assets.silver.transform import clean_events, clean_snapshot, detached
from refinery.contracts.silver import EVENTS, PRODUCTS, USERS
from refinery.resources.lake import LakePaths, write_parquet_atomic
from tests.landing_factory import FAULTY_LINES, PRODUCTS_CSV, USERS_CSV, event, line, write_lines

ARRIVAL = date(2026, 3, 1)
AT = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


def bronze_of(tmp_path, lines: list[bytes], name="a.jsonl") -> pl.DataFrame:
    path = write_lines(tmp_path / name, lines)
    return stamp(bronze_events_from_file(path, name), "events", ARRIVAL, AT)


def test_each_bad_input_kind_is_quarantined_with_its_reason(tmp_path):
    result = clean_events(bronze_of(tmp_path, [ln for ln, _ in FAULTY_LINES]))
    reasons = dict(
        zip(result.quarantine["_line"], result.quarantine["quarantine_reason"], strict=True)
    )
    for number, (_, expected) in enumerate(FAULTY_LINES, start=1):
        if expected in (None, "duplicate"):
            assert number not in reasons
        else:
            assert reasons[number] == expected, (number, expected)
    assert result.duplicates["_line"].to_list() == [12]
    assert result.balanced
    # quarantine keeps what was received, for a person to read
    assert (
        result.quarantine.filter(pl.col("_line") == 2)["_raw"]
        .item()
        .startswith('{"event_id": "e2"')
    )


def test_two_facts_about_one_file_are_two_quarantined_rows(tmp_path):
    """An empty gzip stream under a plain name is two file facts, both before the first line
    (misnamed, empty): each is one quarantined row. Joining quarantine to bronze by file and line
    once made them four, and the accounting check stopped the day."""
    import gzip

    path = tmp_path / "a.jsonl"
    path.write_bytes(gzip.compress(b"", mtime=0))
    bronze = stamp(bronze_events_from_file(path, "a.jsonl"), "events", ARRIVAL, AT)
    result = clean_events(bronze)
    assert result.balanced
    assert result.quarantine["quarantine_reason"].to_list() == ["misnamed_file", "empty_file"]
    assert result.quarantine["quarantine_detail"].to_list() == bronze["_parse_detail"].to_list()


def test_valid_rows_are_typed_normalised_and_follow_the_contract(tmp_path):
    result = clean_events(bronze_of(tmp_path, [ln for ln, _ in FAULTY_LINES]))
    silver = result.silver
    EVENTS.pandera_schema().validate(silver)
    assert silver["event_id"].to_list() == ["ok1", "e11", "e12", "e13"]
    ok = silver.row(0, named=True)
    assert ok["event_type"] == "view"
    assert ok["event_time"] == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert ok["amount"] is None and ok["quantity"] == 1
    purchase = silver.filter(pl.col("event_id") == "e12").row(0, named=True)
    assert (purchase["event_type"], purchase["amount"], purchase["quantity"]) == (
        "purchase",
        12.5,
        2,
    )
    click = silver.filter(pl.col("event_id") == "e13").row(0, named=True)
    assert click["product_id"] is None and click["device"] is None


def write_prior_day(lake: LakePaths, ids: list[str], day: date, **overrides) -> None:
    """Silver events of an earlier day, as the asset writes them."""
    overrides = {"event_time": f"{day.isoformat()}T10:00:00Z", **overrides}
    lines = [line(event(event_id=i, **overrides)) for i in dict.fromkeys(ids)]
    path = write_lines(lake.root / f"prior-{day}.jsonl", lines)
    bronze = stamp(bronze_events_from_file(path, f"prior-{day}.jsonl"), "events", day, AT)
    silver = clean_events(bronze).silver
    assert silver.height == len(set(ids))
    target = lake.partition_dir("silver", "events", day.isoformat())
    write_parquet_atomic(silver, target / "part-0.parquet")


def test_events_seen_on_any_earlier_day_are_dropped_as_duplicates(tmp_path):
    lake = LakePaths(tmp_path)
    # a year back, far beyond any look-back window; "e3" came back with another amount
    write_prior_day(lake, ["e1", "zz"], date(2025, 3, 1))
    write_prior_day(lake, ["e3"], date(2026, 2, 27), event_type="purchase", amount=5.0)
    lines = [line(event(event_id=f"e{i}")) for i in range(5)] + [line(event(event_id="e0"))]
    lines[1] = line(event(event_id="e1", event_time="2025-03-01T10:00:00Z"))  # the same event again
    ids = pl.Series([f"e{i}" for i in range(5)])
    prior = prior_rows(lake, ARRIVAL, ids)
    assert sorted(prior["event_id"].to_list()) == ["e1", "e3"]
    result = clean_events(bronze_of(tmp_path, lines), prior)
    assert result.silver["event_id"].to_list() == ["e0", "e2", "e4"]
    dups = result.duplicates.select("event_id", "duplicate_reason", "original_arrival_date")
    assert dups.rows() == [
        ("e1", "duplicate_event_id", date(2025, 3, 1)),
        ("e3", "conflicting_duplicate", date(2026, 2, 27)),
        ("e0", "duplicate_event_id", ARRIVAL),
    ]
    assert result.balanced


def test_snapshot_rules_and_duplicate_keys(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text(USERS_CSV)
    bronze = stamp(bronze_snapshot_from_file(users, "users.csv", "users"), "users", ARRIVAL, AT)
    result = clean_snapshot(bronze, "users")
    USERS.pandera_schema().validate(result.silver)
    assert result.silver["user_id"].to_list() == ["u1", "u2"]
    assert result.silver["country"].to_list() == ["DE", "US"]
    # each bad row is quarantined by its CSV line (the header is line 1), with its reason and
    # the row as received
    quarantine = result.quarantine.sort("_line")
    reasons = dict(zip(quarantine["_line"], quarantine["quarantine_reason"], strict=True))
    assert reasons == {4: "future_signup_date", 5: "invalid_country", 6: "invalid_boolean"}
    assert quarantine["_raw"].to_list() == USERS_CSV.splitlines()[3:6]
    # the repeated u2 row (line 7) is a duplicate of line 3, not a second u2
    assert result.duplicates.select(
        "user_id", "_line", "duplicate_reason", "original_line"
    ).rows() == [("u2", 7, "duplicate_snapshot_row", 3)]
    assert result.balanced

    products = tmp_path / "products.csv"
    products.write_text(PRODUCTS_CSV)
    bronze = stamp(
        bronze_snapshot_from_file(products, "products.csv", "products"), "products", ARRIVAL, AT
    )
    result = clean_snapshot(bronze, "products")
    PRODUCTS.pandera_schema().validate(result.silver)
    assert result.silver["product_id"].to_list() == ["p1", "p3"]
    assert result.silver["category"].to_list() == ["books", "toys"]
    assert result.quarantine["quarantine_reason"].to_list() == ["negative_list_price"]


def test_snapshot_with_a_missing_column_is_quarantined_whole(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text(
        "user_id,signup_date,country,birth_year,marketing_opt_in\nu1,2025-01-01,DE,1990,true\n"
    )
    bronze = stamp(bronze_snapshot_from_file(users, "users.csv", "users"), "users", ARRIVAL, AT)
    result = clean_snapshot(bronze, "users")
    assert result.silver.height == 0
    assert result.quarantine_by_reason == {"missing_column": 1}
    assert "plan" in result.quarantine["quarantine_detail"].item()


# --- properties -----------------------------------------------------------------------------

ids = st.sampled_from([f"e{i}" for i in range(12)])
fault = st.sampled_from([None, None, None, "malformed", "refund", "negative", "no_user", "future"])


def _line(event_id: str, kind: str | None) -> bytes:
    if kind == "malformed":
        return b'{"event_id": "' + event_id.encode()
    overrides = {
        None: {},
        "refund": {"event_type": "refund"},
        "negative": {"event_type": "purchase", "amount": -1},
        "no_user": {"user_id": ...},
        "future": {"event_time": "2026-03-09T00:00:00Z"},
    }[kind]
    return line(event(event_id=event_id, **overrides))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(ids, fault), max_size=40), prior=st.lists(ids, max_size=6))
def test_accounting_invariant_and_dedupe_hold_for_any_input(tmp_path_factory, rows, prior):
    tmp = tmp_path_factory.mktemp("prop")
    lake = LakePaths(tmp)
    write_prior_day(lake, prior, date(2025, 6, 1))
    lines = [_line(i, k) for i, k in rows]
    day_ids = pl.Series([i for i, _ in rows], dtype=pl.String)
    result = clean_events(
        bronze_of(tmp, lines) if lines else _empty_bronze(), prior_rows(lake, ARRIVAL, day_ids)
    )
    a = result.accounting
    assert a["bronze_rows"] == len(lines)
    assert a["bronze_rows"] == a["silver_rows"] + a["quarantined_rows"] + a["duplicates_dropped"]
    # silver ids unique, none from the look-back window, and each valid new id kept once
    kept = result.silver["event_id"].to_list()
    assert len(kept) == len(set(kept)) and not set(kept) & set(prior)
    valid_ids = {i for i, k in rows if k is None}
    assert set(kept) == valid_ids - set(prior)
    # the kept copy is the first occurrence in the file
    first_line = {}
    for n, (i, k) in enumerate(rows, start=1):
        if k is None:
            first_line.setdefault(i, n)
    assert dict(zip(kept, result.silver["_line"].to_list(), strict=True)) == {
        i: first_line[i] for i in kept
    }


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(st.tuples(ids, fault), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=12),
    prior=st.lists(ids, max_size=6),
)
def test_silver_written_part_by_part_equals_the_whole_day_in_one_frame(
    tmp_path_factory, rows, cuts, prior
):
    """The asset types and validates each bronze part alone, then dedupes over the whole day:
    the result must be exactly `clean_events` on the day in one frame (same rows, same order,
    same duplicates and quarantine), also with more than ten parts (part-10 sorts after part-9)."""
    tmp = tmp_path_factory.mktemp("parts")
    bronze = bronze_of(tmp, [_line(i, k) for i, k in rows])
    lake = LakePaths(tmp)
    write_prior_day(lake, prior, date(2026, 1, 5))
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    part_dir = lake.partition_dir("bronze", "events", ARRIVAL.isoformat())
    for n, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        write_parquet_atomic(bronze.slice(lo, hi - lo), part_dir / f"part-{n}.parquet")
    parts = lake.partition_parts("bronze", "events", ARRIVAL.isoformat())
    assert [int(p.stem[5:]) for p in parts] == list(range(len(bounds) - 1))

    staging = lake.staging_dir("silver", "events", ARRIVAL.isoformat())
    whole = clean_events(bronze, prior_rows(lake, ARRIVAL, bronze["event_id"].drop_nulls()))
    # typed parts held in memory and written once, and each written as typed, then rewritten
    for held_bytes in (HELD_SILVER_BYTES, 0):
        shutil.rmtree(staging, ignore_errors=True)
        by_parts = write_silver_events(parts, lake, ARRIVAL, staging, EVENTS, held_bytes)
        silver = pl.concat(
            [pl.read_parquet(staging / f"part-{n}.parquet") for n in range(len(parts))]
        )
        assert silver.equals(whole.silver)
        assert by_parts.duplicates.equals(whole.duplicates)
        assert by_parts.quarantine.equals(whole.quarantine)
        assert by_parts.bronze_rows == whole.bronze_rows == len(rows)
        assert by_parts.quarantine_by_reason == whole.quarantine_by_reason


def _empty_bronze() -> pl.DataFrame:
    from refinery.contracts.bronze import BRONZE_EVENTS

    return pl.DataFrame(schema={c.name: c.dtype for c in BRONZE_EVENTS.columns})


def test_history_written_with_other_columns_still_deduplicates(tmp_path):
    """A partition from before a column existed, or with one since dropped, is still scanned."""
    lake = LakePaths(tmp_path)
    write_prior_day(lake, ["old1"], date(2026, 1, 5))
    part = lake.partition_dir("silver", "events", "2026-01-05") / "part-0.parquet"
    frame = pl.read_parquet(part)
    write_parquet_atomic(frame.drop("session_id").with_columns(retired=pl.lit(1)), part)
    write_prior_day(lake, ["old2"], date(2026, 1, 6))
    found = prior_rows(lake, ARRIVAL, pl.Series(["old1", "old2", "new"]))
    assert found["event_id"].to_list() == ["old1", "old2"]
    assert found["session_id"].to_list() == [None, "s1"]


def test_detached_rows_equal_the_originals_in_values_and_dtypes():
    # what silver keeps of each part (quarantine, duplicates) is copied before the next part; the
    # copy must be the same frame (its memory effect is measured by bench/silver_memory.py)
    n = 20_000
    frame = pl.DataFrame(
        {
            "s": [f"{i:08d}-" + "x" * 40 for i in range(n)],
            "t": pl.Series([datetime(2025, 1, 1, tzinfo=UTC)] * n).dt.cast_time_unit("us"),
            "d": pl.Series([Decimal("1.25")] * n, dtype=pl.Decimal(12, 2)),
            "n": pl.Series([None, 1] * (n // 2), dtype=pl.Int64),
            "day": [date(2025, 1, 1)] * n,
        }
    )
    few = frame.filter(pl.int_range(pl.len()) % 5_000 == 0)
    assert_frame_equal(detached(few), few)
    assert_frame_equal(detached(frame.clear()), frame.clear())
