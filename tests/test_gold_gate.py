"""A failed blocking check stops every consumer: gold reads no silver partition whose latest
blocking check failed, across runs, through the Dagster instance's own check records.

Real synth landing files -> bronze -> silver through Dagster (one run per day, as the sensor
runs them), one day's events poisoned past the quarantine limit and one day's users snapshot
missing a column; gold runs over ranges that do and do not read them.
"""

from datetime import date, timedelta

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from refinery.assets.gold.gate import event_partitions_read, snapshot_partitions_read
from refinery.resources.lake import LakePaths
from refinery.synth import SynthConfig, generate

START = date(2026, 3, 2)
DAYS = 5
BAD_EVENTS_DAY = 1  # events: a fifth of the lines malformed (limit 5 %)
BAD_USERS_DAY = 4  # users snapshot lacks `plan`: every row quarantined
BRONZE_SILVER = [
    AssetKey([layer, table])
    for layer in ("bronze", "silver")
    for table in ("events", "users", "products")
]


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


def poison(events_dir) -> bytes:
    """Append malformed lines to a day's first events file; returns its original bytes."""
    path = min(events_dir.glob("*.jsonl"))
    original = path.read_bytes()
    lines = original.count(b"\n")
    path.write_bytes(original + b'{"event_id": "broken", "user_\n' * max(lines, 1))
    return original


def failure_message(result) -> str:
    failures = [
        event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE
    ]
    assert failures, "expected a failed step"
    return "\n".join(str(event.event_specific_data.error) for event in failures)


def gold_materialized(result) -> set[str]:
    return {
        event.asset_key.to_user_string()
        for event in result.all_events
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION
        and event.asset_key.path[0] == "gold"
    }


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate_lake")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFINERY_DATA_DIR", str(root))
        generate(
            SynthConfig(
                start=START,
                days=DAYS,
                users=60,
                events_per_day=300,
                seed=5,
                fault_rate=0.0,
                users_missing_column_days=(BAD_USERS_DAY,),
            ),
            root,
        )
        paths = LakePaths(root)
        original = poison(paths.landing_dir("events", day(BAD_EVENTS_DAY)))

        from refinery.definitions import defs
        from refinery.sensors.landing_sensor import GOLD_KEYS

        instance = DagsterInstance.ephemeral()
        job = defs.resolve_job_def("ingest_job")

        def ingest(i: int):
            return job.execute_in_process(
                partition_key=day(i),
                instance=instance,
                asset_selection=BRONZE_SILVER,
                raise_on_error=False,
            )

        def gold(first: int, last: int):
            return job.execute_in_process(
                instance=instance,
                asset_selection=GOLD_KEYS,
                tags={
                    "dagster/asset_partition_range_start": day(first),
                    "dagster/asset_partition_range_end": day(last),
                },
                raise_on_error=False,
            )

        ingests = {i: ingest(i) for i in range(DAYS)}
        blocked_both = gold(0, DAYS - 1)
        warehouse_after_block = paths.warehouse.exists()
        # fix the events day: the original file is re-delivered, the partition re-run
        min(paths.landing_dir("events", day(BAD_EVENTS_DAY)).glob("*.jsonl")).write_bytes(original)
        reingest = ingest(BAD_EVENTS_DAY)
        before_bad_users = gold(0, BAD_USERS_DAY - 1)
        blocked_users = gold(BAD_USERS_DAY - 1, BAD_USERS_DAY)
        yield {
            "ingests": ingests,
            "blocked_both": blocked_both,
            "warehouse_after_block": warehouse_after_block,
            "reingest": reingest,
            "before_bad_users": before_bad_users,
            "blocked_users": blocked_users,
        }


def test_silver_wrote_the_bad_partitions_and_failed_their_checks(story):
    # the premise: the files are on disk (silver writes, then checks), the runs failed
    assert not story["ingests"][BAD_EVENTS_DAY].success
    assert not story["ingests"][BAD_USERS_DAY].success
    assert all(story["ingests"][i].success for i in range(DAYS) if i not in (1, 4))


def test_gold_fails_naming_every_blocked_partition_and_check(story):
    run = story["blocked_both"]
    assert not run.success
    message = failure_message(run)
    assert (
        f"silver/events partition {day(BAD_EVENTS_DAY)}: blocking check quarantine_rate" in message
    )
    assert f"silver/users partition {day(BAD_USERS_DAY)}: blocking check quarantine_rate" in message
    assert "of rows quarantined" in message  # silver's own description of the failure
    assert gold_materialized(run) == set()
    assert not story["warehouse_after_block"]  # refused before dbt opened anything


def test_re_running_the_fixed_partition_lets_gold_run(story):
    assert story["reingest"].success
    run = story["before_bad_users"]
    assert run.success, failure_message(run)
    assert "gold/user_daily_features" in gold_materialized(run)


def test_a_snapshot_is_blocked_only_for_the_runs_that_read_it(story):
    run = story["blocked_users"]  # as-of dates 3..4: day 4's users snapshot is what they see
    assert not run.success
    message = failure_message(run)
    assert f"silver/users partition {day(BAD_USERS_DAY)}" in message
    assert "silver/events" not in message  # the re-run events day passes now


def test_the_partitions_a_run_reads():
    assert event_partitions_read(date(2026, 3, 10), date(2026, 3, 11), 3) == [
        "2026-03-08",
        "2026-03-09",
        "2026-03-10",
        "2026-03-11",
    ]
    snapshots = ["2026-03-01", "2026-03-04", "2026-03-06", "2026-03-09", "2026-03-12"]
    # the newest snapshot on or before the first date, and every one after it up to the last
    assert snapshot_partitions_read(date(2026, 3, 5), date(2026, 3, 9), snapshots) == [
        "2026-03-04",
        "2026-03-06",
        "2026-03-09",
    ]
    assert snapshot_partitions_read(date(2026, 3, 4), date(2026, 3, 4), snapshots) == ["2026-03-04"]
    assert snapshot_partitions_read(date(2026, 2, 1), date(2026, 2, 2), snapshots) == []
