"""Bronze and silver backfills are single runs: one run over a range of dates, processed in date
order, each date with its own materialization (row counts, quality) and its own partitioned check
results; a blocking check that fails on a date stops the run before the next date.

One lake and one Dagster instance (real synth landing files, real Parquet, a real SQLite
instance): days 0..2 through Dagster's API, days 3..5 (day 4 poisoned past the quarantine
limit) through `dagster asset materialize --partition-range`. A second lake is killed in the
middle of a range (SIGKILL after its first silver date) and rerun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from refinery.assets.silver.assets import quarantine_rate_check
from refinery.assets.silver.transform import SilverResult
from refinery.faults import KILL_ENV
from refinery.resources.lake import LakePaths
from refinery.synth import SynthConfig, generate

START = date(2026, 3, 2)
DAYS = 6
POISONED = 4
BRONZE, SILVER = AssetKey(["bronze", "events"]), AssetKey(["silver", "events"])
REPO = Path(__file__).resolve().parents[1]


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


def synth(root: Path) -> None:
    generate(
        SynthConfig(start=START, days=DAYS, users=60, events_per_day=300, seed=11, fault_rate=0.0),
        root,
    )


def poison(events_dir: Path) -> None:
    path = min(events_dir.glob("*.jsonl"))
    original = path.read_bytes()
    path.write_bytes(original + b'{"event_id": "broken", "user_\n' * max(original.count(b"\n"), 1))


def materializations(instance, key) -> list:
    return instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1000).records


def check_records(instance, key, name) -> list:
    return instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(key, name), limit=1000
    )


def rows(paths: LakePaths, layer: str, partition: str) -> int:
    return (
        pl.scan_parquet(paths.partition_parts(layer, "events", partition))
        .select(pl.len())
        .collect()
        .item()
    )


RANGE_RUN = """
import sys
from dagster import AssetKey, DagsterInstance
from refinery.definitions import defs

first, last = sys.argv[1], sys.argv[2]
result = defs.resolve_job_def("ingest_job").execute_in_process(
    instance=DagsterInstance.ephemeral(),
    asset_selection=[AssetKey(["bronze", "events"]), AssetKey(["silver", "events"])],
    tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    raise_on_error=False,
)
sys.exit(0 if result.success else 1)
"""


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("backfill_lake")
    home = tmp_path_factory.mktemp("backfill_home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFINERY_DATA_DIR", str(root))
        env.setenv("DAGSTER_HOME", str(home))
        synth(root)
        paths = LakePaths(root)
        poison(paths.landing_dir("events", day(POISONED)))
        from refinery.definitions import defs

        instance = DagsterInstance.get()
        api = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance,
            asset_selection=[BRONZE, SILVER],
            tags={
                "dagster/asset_partition_range_start": day(0),
                "dagster/asset_partition_range_end": day(2),
            },
            raise_on_error=False,
        )
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "refinery.definitions",
                "--select",
                "bronze/events,silver/events",
                "--partition-range",
                f"{day(3)}...{day(5)}",
            ],
            cwd=REPO,
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        yield {"root": root, "paths": paths, "instance": instance, "api": api, "cli": cli}
        instance.dispose()


def test_a_range_is_one_run_with_one_materialization_per_date(story):
    instance, paths = story["instance"], story["paths"]
    assert story["api"].success
    api_run = story["api"].run_id
    for key, layer in ((BRONZE, "bronze"), (SILVER, "silver")):
        mine = [r for r in materializations(instance, key) if r.run_id == api_run]
        assert sorted(r.partition_key for r in mine) == [day(0), day(1), day(2)]
        for record in mine:
            metadata = record.asset_materialization.metadata
            # each date's own figures, as written to its own partition
            assert metadata["dagster/row_count"].value == rows(paths, layer, record.partition_key)
            assert metadata["path"].value.endswith(f"date={record.partition_key}")
        counts = {r.asset_materialization.metadata["dagster/row_count"].value for r in mine}
        assert len(counts) > 1  # not one figure copied onto every date
    silver = {
        r.partition_key: r.asset_materialization.metadata
        for r in materializations(instance, SILVER)
        if r.run_id == api_run
    }
    for partition, metadata in silver.items():
        bronze_rows = metadata["accounting/bronze_rows"].value
        assert bronze_rows == rows(paths, "bronze", partition)
        assert bronze_rows == (
            metadata["accounting/silver_rows"].value
            + metadata["accounting/quarantined_rows"].value
            + metadata["accounting/duplicates_dropped"].value
        )
        assert metadata["quarantine_by_reason"].value.schema.columns[0].name == "reason"  # a table


def test_every_date_has_its_own_check_results(story):
    instance, api_run = story["instance"], story["api"].run_id
    for key, names in (
        (BRONZE, ("contract", "unparsed_lines", "landing_files")),
        (SILVER, ("row_accounting", "contract", "quarantine_rate", "duplicate_conflicts")),
    ):
        for name in names:
            evaluated = {
                r.partition: r.status
                for r in check_records(instance, key, name)
                if r.run_id == api_run
                and r.partition is not None
                and r.status != AssetCheckExecutionRecordStatus.PLANNED
            }
            assert evaluated == {
                day(i): AssetCheckExecutionRecordStatus.SUCCEEDED for i in range(3)
            }, (key, name)


def test_the_cli_range_stops_at_the_failed_date(story):
    instance, paths, cli = story["instance"], story["paths"], story["cli"]
    assert cli.returncode != 0, cli.stdout[-3000:]
    runs = [r for r in instance.get_runs() if r.run_id != story["api"].run_id]
    assert len(runs) == 1 and runs[0].status == DagsterRunStatus.FAILURE  # one run for 3 dates
    run_id = runs[0].run_id
    assert sorted(
        r.partition_key for r in materializations(instance, BRONZE) if r.run_id == run_id
    ) == [day(3), day(4), day(5)]
    # silver: the date before the failure and the failed date (its files were written and
    # checked) are materialized; the date after it was never processed
    assert sorted(
        r.partition_key for r in materializations(instance, SILVER) if r.run_id == run_id
    ) == [day(3), day(4)]
    assert not paths.partition_parts("silver", "events", day(5))
    rate = {
        r.partition: r.status
        for r in check_records(instance, SILVER, "quarantine_rate")
        if r.run_id == run_id
        and r.partition is not None
        and r.status != AssetCheckExecutionRecordStatus.PLANNED
    }
    assert rate == {
        day(3): AssetCheckExecutionRecordStatus.SUCCEEDED,
        day(4): AssetCheckExecutionRecordStatus.FAILED,
    }
    # gold's gate sees the failed date through the partitioned evaluation
    from refinery.assets.gold.gate import blocked_partitions

    blocked = blocked_partitions(
        instance,
        {SILVER: [day(i) for i in range(DAYS - 1)]},
        {SILVER: ["quarantine_rate", "contract"]},
    )
    assert [(b.partition, b.check_name) for b in blocked] == [(day(4), "quarantine_rate")]


def test_a_kill_in_the_middle_of_a_range_leaves_whole_dates_and_a_rerun_equals_one_run(
    story, tmp_path
):
    root = tmp_path / "lake"
    synth(root)
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["REFINERY_DATA_DIR"] = str(root)

    def run(kill_at=None):
        return subprocess.run(
            [sys.executable, "-c", RANGE_RUN, day(0), day(2)],
            env={**env, **({KILL_ENV: kill_at} if kill_at else {})},
            capture_output=True,
            timeout=300,
            check=False,
            cwd=REPO,
        ).returncode

    assert run("silver.after_day") == -9  # SIGKILL after the first silver date was committed
    paths = LakePaths(root)
    assert paths.partition_parts("silver", "events", day(0))
    assert not paths.partition_parts("silver", "events", day(1))
    assert rows(paths, "silver", day(0)) == rows(story["paths"], "silver", day(0))
    assert run() == 0
    for i in range(3):
        killed = pl.read_parquet(paths.partition_parts("silver", "events", day(i))).sort("event_id")
        whole = pl.read_parquet(story["paths"].partition_parts("silver", "events", day(i))).sort(
            "event_id"
        )
        assert killed.drop("_ingested_at", strict=False).equals(
            whole.drop("_ingested_at", strict=False)
        )


def test_a_fully_quarantined_partition_fails_whatever_the_limit():
    quarantine = pl.DataFrame(
        {
            "quarantine_reason": ["malformed_json"] * 3,
            "_source_file": ["a.jsonl"] * 3,
            "_line": [1, 2, 3],
            "quarantine_detail": ["cut line"] * 3,
            "_raw": ['{"a', '{"b', '{"c'],
        }
    )
    result = SilverResult(
        silver=pl.DataFrame(),
        quarantine=quarantine,
        duplicates=pl.DataFrame(),
        bronze_rows=3,
        quarantine_by_reason={"malformed_json": 3},
    )
    check = quarantine_rate_check(result, 1.0, SILVER)
    assert not check.passed and check.severity.value == "ERROR"
    assert "every row" in check.description
    partly = SilverResult(
        silver=pl.DataFrame(),
        quarantine=quarantine.head(1),
        duplicates=pl.DataFrame(),
        bronze_rows=3,
        quarantine_by_reason={"malformed_json": 1},
    )
    assert quarantine_rate_check(partly, 1.0, SILVER).passed
