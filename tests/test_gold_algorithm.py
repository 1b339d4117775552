"""The gold marts' fast algorithm (per-(user, day) aggregates, interval step functions) against
their definition (tests/gold_reference.py: every event joined to every as-of date), on generated
lakes full of corners, through the real Dagster asset and dbt: one backfill, then day by day,
after a silver partition is rewritten, and under `dbt build --full-refresh`."""

from __future__ import annotations

import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from refinery.assets.gold.dbt_project import DBT_PROJECT_DIR
from refinery.assets.gold.plan import label_delay_days
from refinery.resources.lake import LakePaths, write_parquet_atomic
from tests.gold_fixtures import run_gold as gold_run
from tests.gold_reference import reference_features, reference_labels, write_hostile_silver

pytestmark = pytest.mark.slow  # each test builds gold several times

FIRST = date(2026, 1, 1)
DAY = timedelta(days=1)


def run_gold(root: Path, first: date, last: date) -> None:
    assert gold_run(root, first, last).success


def published(root: Path, model: str) -> pl.DataFrame:
    files = sorted((LakePaths(root).lake / "gold" / model).rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("as_of_date", "user_id")


def warehouse(root: Path, model: str) -> pl.DataFrame:
    with duckdb.connect(str(LakePaths(root).warehouse), read_only=True) as con:
        frame = pl.from_arrow(con.sql(f"select * from {model}").to_arrow_table())
    return frame.sort("as_of_date", "user_id")


def assert_matches_definition(root: Path, features: pl.DataFrame, labels: pl.DataFrame) -> None:
    dates = sorted(set(features["as_of_date"].to_list()))
    expected = reference_features(root, dates)
    assert features.height == expected.height > 0
    assert_frame_equal(features, expected.select(features.columns), check_dtypes=False)
    labelled = features.filter(pl.col("as_of_date").is_in(labels["as_of_date"].unique().implode()))
    expected_labels = reference_labels(root, labelled)
    assert_frame_equal(labels, expected_labels.select(labels.columns), check_dtypes=False)


def test_backfill_then_daily_runs_match_the_definition(tmp_path, monkeypatch):
    days, seed = 42, 3
    root = tmp_path / "lake"
    monkeypatch.setenv("REFINERY_DATA_DIR", str(root))
    write_hostile_silver(root, FIRST, days, users=12, seed=seed)
    last = FIRST + (days - 1) * DAY
    run_gold(root, FIRST, last - 2 * DAY)  # history in one build
    for offset in (1, 0):  # then day by day: the incremental path
        run_gold(root, last - offset * DAY, last - offset * DAY)
    features = published(root, "user_daily_features")
    assert features["as_of_date"].n_unique() == days
    assert_matches_definition(root, features, published(root, "labels"))


def test_a_rewritten_silver_partition_is_re_aggregated(tmp_path, monkeypatch):
    """Silver day X rewritten after gold aggregated it (a backfill, a repaired day): a later
    gold day must read the new rows, not the aggregates built from the old ones."""
    root = tmp_path / "lake"
    monkeypatch.setenv("REFINERY_DATA_DIR", str(root))
    write_hostile_silver(root, FIRST, 20, users=8, seed=5)
    run_gold(root, FIRST, FIRST + 18 * DAY)
    lake = LakePaths(root)
    rewritten = (FIRST + 15 * DAY).isoformat()
    part = lake.partition_file("silver", "events", rewritten)
    frame = pl.read_parquet(part)
    extra = frame.head(3).with_columns(
        pl.concat_str(pl.lit("again-"), pl.col("event_id")).alias("event_id"),
        pl.lit("purchase").alias("event_type"),
        pl.lit(12.34).alias("amount"),
        pl.lit("u-new").alias("user_id"),
    )
    write_parquet_atomic(pl.concat([frame.tail(-5), extra]), part)
    last = FIRST + 19 * DAY
    run_gold(root, last, last)
    features = published(root, "user_daily_features").filter(pl.col("as_of_date") == last)
    assert "u-new" in features["user_id"].to_list()
    assert_frame_equal(
        features, reference_features(root, [last]).select(features.columns), check_dtypes=False
    )


def test_full_refresh_rebuilds_every_as_of_date_of_history(tmp_path):
    """`dbt build --full-refresh` for one date rebuilds all of history, not only that date."""
    root = tmp_path / "lake"
    days = 15
    write_hostile_silver(root, FIRST, days, users=6, seed=6)
    last = FIRST + (days - 1) * DAY
    env = {**os.environ, "REFINERY_DATA_DIR": str(root)}
    vars_arg = f"{{data_dir: {root}, min_date: '{last}', max_date: '{last}'}}"
    base = [
        "dbt",
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(tmp_path / "target"),
        "--vars",
        vars_arg,
    ]
    subprocess.run([*base, "--full-refresh"], env=env, check=True, capture_output=True)
    features = warehouse(root, "user_daily_features")
    assert features["as_of_date"].min() == FIRST and features["as_of_date"].max() == last
    labels = warehouse(root, "labels")
    assert labels["as_of_date"].max() == last - label_delay_days() * DAY
    assert_matches_definition(root, features, labels)
    # an incremental build of the same date afterwards changes nothing
    subprocess.run(base, env=env, check=True, capture_output=True)
    assert_frame_equal(warehouse(root, "user_daily_features"), features)
