"""The engine floor (bench/floor_fast.sql) equals refinery's gold marts, from silver and from
landing files, on a generated lake full of corners: events up to 40 days late, re-deliveries of
an event on later days (landing only: silver holds the first arrival), event times in other
offsets than UTC, sessions and products recurring over days, products that change category or
leave the catalogue, users whose CRM rows change or vanish, days without a users file, a user
whose only purchase drops out of the 90-day look-back. Gold is built once, by the real Dagster
asset and dbt; each floor is the real DuckDB script. A floor broken in one place must fail."""

from __future__ import annotations

import csv
import gzip
import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from bench.compare import FeatureMismatch
from bench.floor import render_floor_sql, run_sql
from bench.run import check_equal
from refinery.resources.lake import LakePaths, write_parquet_atomic
from tests.gold_fixtures import EVENT_SCHEMA, run_gold
from tests.gold_reference import write_hostile_silver

FIRST = date(2026, 1, 1)
DAYS = 100
LAST = FIRST + timedelta(days=DAYS - 1)
GOLD_FIRST = LAST - timedelta(days=11)  # 12 as-of dates of features, 2 of training examples
DAY = timedelta(days=1)


def rare_buyer_events() -> list[dict]:
    """u-rare buys once on day 2 and views now and then: its days since last purchase crosses
    the 90-day look-back inside the gold dates (null from then on)."""
    rows = []
    moments = [(FIRST + 2 * DAY, "purchase")] + [
        (FIRST + offset * DAY, "view") for offset in (80, 86, 91, 95)
    ]
    for i, (day, kind) in enumerate(moments):
        rows.append(
            {
                "event_id": f"rare-{i}",
                "user_id": "u-rare",
                "event_type": kind,
                "event_time": datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9),
                "product_id": "p1",
                "amount": 19.99 if kind == "purchase" else None,
                "quantity": 2,
                "device": "ios",
                "session_id": f"rare-s{i}",
                "arrival_date": day,
                "_source_file": f"landing/events/{day}/events.jsonl",
                "_line": 10_000 + i,
                "_ingested_at": datetime(2026, 6, 1, tzinfo=UTC),
            }
        )
    return rows


def add_to_silver(root: Path, rows: list[dict]) -> None:
    lake = LakePaths(root)
    for day in sorted({r["arrival_date"] for r in rows}):
        part = lake.partition_file("silver", "events", day.isoformat())
        extra = pl.DataFrame([r for r in rows if r["arrival_date"] == day], schema=EVENT_SCHEMA)
        write_parquet_atomic(pl.concat([pl.read_parquet(part), extra]), part)


def write_landing_from_silver(root: Path, seed: int) -> int:
    """Landing files that silver's rules turn into exactly this silver: each event as a JSON line
    of its arrival day with its time in a random UTC offset, plus re-deliveries of earlier events
    (same content, a later day's file); the snapshots as CSV. Returns the re-deliveries written."""
    rng = random.Random(seed)
    lake = LakePaths(root)
    landing = root / "landing"
    delivered: list[dict] = []
    redeliveries = 0
    for offset in range(DAYS):
        day = (FIRST + offset * DAY).isoformat()
        events = pl.read_parquet(lake.partition_file("silver", "events", day)).to_dicts()
        lines = []
        again = rng.sample(delivered, min(len(delivered), 4))
        redeliveries += len(again)
        for row in events + again:
            shift = timezone(timedelta(minutes=rng.choice((0, 330, -480, 600, -60))))
            record = {
                "event_id": row["event_id"],
                "user_id": row["user_id"],
                "event_type": row["event_type"],
                "event_time": row["event_time"].astimezone(shift).isoformat(),
                "product_id": row["product_id"],
                "quantity": row["quantity"],
                "device": row["device"],
                "session_id": row["session_id"],
            }
            if row["amount"] is not None:
                record["amount"] = row["amount"]
            lines.append(json.dumps(record))
        delivered.extend(events)
        blob = ("\n".join(lines) + "\n").encode()
        folder = landing / "events" / day
        folder.mkdir(parents=True)
        if offset % 3:
            (folder / "events.jsonl").write_bytes(blob)
        else:
            (folder / "events.jsonl.gz").write_bytes(gzip.compress(blob))
        for table, columns in (
            ("users", ("user_id", "signup_date", "country", "birth_year", "marketing_opt_in",
                       "plan")),
            ("products", ("product_id", "category", "brand", "list_price", "active")),
        ):  # fmt: skip
            part = lake.partition_file("silver", table, day)
            if not part.exists():
                continue  # a day without that snapshot in landing too
            out = landing / table / day / f"{table}.csv"
            out.parent.mkdir(parents=True)
            with out.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                for row in pl.read_parquet(part).select(columns).iter_rows():
                    writer.writerow(
                        ["" if v is None else str(v).lower() if isinstance(v, bool) else v
                         for v in row]
                    )  # fmt: skip
    return redeliveries


@pytest.fixture(scope="module")
def lake(tmp_path_factory, module_env) -> Path:
    root = tmp_path_factory.mktemp("floor") / "data"
    module_env.setenv("REFINERY_DATA_DIR", str(root))
    write_hostile_silver(root, FIRST, DAYS, users=8, seed=14)
    add_to_silver(root, rare_buyer_events())
    assert write_landing_from_silver(root, seed=14) > 100
    # the training examples of GOLD_FIRST - 10 join features that gold built in an earlier run
    assert run_gold(root, GOLD_FIRST - 10 * DAY, LAST).success
    return root


def floor(root: Path, out: Path, source: str, edit=None, first: date = GOLD_FIRST) -> None:
    sql = render_floor_sql(
        root / "landing", out, str(first), str(LAST), algorithm="preaggregated", source=source
    )
    if edit is not None:
        sql = edit(sql)
    out.mkdir(parents=True, exist_ok=True)
    run_sql(sql)


@pytest.mark.parametrize("source", ["silver", "landing"])
def test_the_floor_equals_refinerys_gold(lake, tmp_path, source):
    floor(lake, tmp_path, source)
    checks = check_equal(lake, tmp_path, GOLD_FIRST, LAST, f"floor from {source}")
    assert checks["user_daily_features"]["rows"] > 12 * 8
    assert checks["training_examples"]["rows"] > 2 * 8
    features = pl.read_parquet(tmp_path / "user_daily_features.parquet")
    rare = features.filter(pl.col("user_id") == "u-rare").sort("as_of_date")
    # the corner the fixture planted is really in the data: the look-back runs out in the range
    assert rare["days_since_last_purchase"].is_null().any()
    assert rare["days_since_last_purchase"].is_not_null().any()


def test_one_new_day_equals_refinerys_gold(lake, tmp_path):
    """The add-a-day case: as-of dates LAST - 10 and LAST only, with a gap between them."""
    floor(lake, tmp_path, "silver", first=LAST)
    checks = check_equal(lake, tmp_path, LAST, LAST, "floor for one day")
    assert checks["user_daily_features"]["rows"] >= 8 and checks["training_examples"]["rows"] >= 8


# one wrong step each: what the equality check must catch
BREAKS = {
    "a re-delivery counted again": (
        "landing",
        "order by arrival_date) = 1",
        "order by arrival_date) >= 1",
    ),
    "a key's days counted apart": (
        "silver",
        "greatest(known_from, coalesce(covered_30, known_from))",
        "known_from",
    ),
    "the category of the first snapshot": (
        "silver",
        "previous_category is not distinct from category then 0",
        "true then 0",
    ),
    "a late arrival counted from its event day": (
        "silver",
        "greatest(event_date, arrival_date) as known_from,\n    count(*) as n,\n    count(*) filter",
        "event_date as known_from,\n    count(*) as n,\n    count(*) filter",
    ),
    "no purchase look-back": ("silver", "last_purchase < 90 then", "last_purchase < 900 then"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_floor_fails_the_check(lake, tmp_path, name):
    source, old, new = BREAKS[name]

    def edit(sql: str) -> str:
        assert sql.count(old) == 1, f"{name}: {old!r} is not in the floor once"
        return sql.replace(old, new)

    floor(lake, tmp_path, source, edit)
    with pytest.raises(FeatureMismatch):
        check_equal(lake, tmp_path, GOLD_FIRST, LAST, name)
