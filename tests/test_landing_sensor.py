"""landing_sensor: each arrival date is requested once, again only when its files change."""

import json
import os
import time

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, build_sensor_context

from refinery.definitions import defs
from refinery.resources import LakeResource
from refinery.sensors.landing import new_arrivals, scan_landing
from refinery.sensors.landing_sensor import landing_sensor


def land(root, source, day, name="x.jsonl", text="{}\n", age_s=60):
    path = root / "landing" / source / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


def tick(instance, lake, cursor=None):
    with build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": lake}, definitions=defs
    ) as context:
        data = landing_sensor.evaluate_tick(context)
    return data.run_requests or [], data.cursor, data.skip_message


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_scan_fingerprints_change_with_files_and_wait_for_settling(tmp_path):
    land(tmp_path, "events", "2026-03-01")
    land(tmp_path, "users", "2026-03-01", "users.csv", "user_id\n")
    (first,) = scan_landing(tmp_path / "landing", settle_seconds=10)
    assert first.sources == ("events", "users")
    land(tmp_path, "events", "2026-03-01", "y.jsonl")
    (second,) = scan_landing(tmp_path / "landing", settle_seconds=10)
    assert second.fingerprint != first.fingerprint
    land(tmp_path, "events", "2026-03-02", age_s=0)  # still being written
    assert [a.date for a in scan_landing(tmp_path / "landing", settle_seconds=10)] == ["2026-03-01"]


def test_new_arrivals_adopts_what_was_ingested_outside_the_sensor(tmp_path):
    land(tmp_path, "events", "2026-03-01")
    land(tmp_path, "events", "2026-03-02")
    arrivals = scan_landing(tmp_path / "landing")
    todo, cursor = new_arrivals(arrivals, {}, ingested={"2026-03-01"})
    assert [a.date for a in todo] == ["2026-03-02"]
    assert set(cursor) == {"2026-03-01", "2026-03-02"}
    assert new_arrivals(arrivals, cursor, set())[0] == []


def test_sensor_requests_each_date_once_and_again_when_files_change(tmp_path, instance):
    lake = LakeResource(data_dir=str(tmp_path))
    land(tmp_path, "events", "2026-03-01")
    land(tmp_path, "products", "2026-03-01", "products.csv", "product_id\n")
    land(tmp_path, "events", "2026-03-02")

    requests, cursor, _ = tick(instance, lake)
    assert [r.partition_key for r in requests] == ["2026-03-01", "2026-03-02"]
    first = requests[0]
    assert first.tags["refinery/trigger"] == "landing"
    assert AssetKey(["silver", "products"]) in first.asset_selection
    assert AssetKey(["silver", "users"]) not in first.asset_selection  # no users landed that day
    assert AssetKey(["gold", "user_daily_features"]) in first.asset_selection
    # the drift report over the new gold days runs in the same run, after gold
    assert first.asset_selection[-1] == AssetKey(["ml", "feature_drift_report"])

    requests, cursor2, skip = tick(instance, lake, cursor)
    assert requests == [] and "no new arrival dates" in skip

    land(tmp_path, "events", "2026-03-02", "late-redelivery.jsonl")
    requests, _, _ = tick(instance, lake, cursor2)
    assert [r.partition_key for r in requests] == ["2026-03-02"]
    assert requests[0].run_key != f"landing-2026-03-02-{json.loads(cursor)['2026-03-02']}"


def test_sensor_skips_dates_already_ingested_by_other_runs(tmp_path, instance):
    lake = LakeResource(data_dir=str(tmp_path))
    land(tmp_path, "events", "2026-03-01")
    land(tmp_path, "events", "2026-03-02")
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey(["bronze", "events"]), partition="2026-03-01")
    )
    requests, cursor, _ = tick(instance, lake)
    assert [r.partition_key for r in requests] == ["2026-03-02"]
    assert set(json.loads(cursor)) == {"2026-03-01", "2026-03-02"}


def test_folders_that_are_not_arrival_dates_are_named_and_never_block_valid_dates(
    tmp_path, instance
):
    """`2026-09-31` used to fail every tick with DagsterUnknownPartitionError; `latest/` and
    `2026-13-40/` were skipped in silence."""
    lake = LakeResource(data_dir=str(tmp_path))
    for bad in ("2026-09-31", "latest", "2026-13-40", "20261001", "1999-01-01", "2999-01-01"):
        land(tmp_path, "events", bad)
    land(tmp_path, "events", "2026-03-03")
    (tmp_path / "landing" / "events" / "2026-03-04").mkdir()  # empty
    (tmp_path / "landing" / "events" / "stray.jsonl").write_text("{}\n")
    (tmp_path / "landing" / "clicks" / "2026-03-03").mkdir(parents=True)
    (tmp_path / "landing" / "events" / "2026-03-05").mkdir()
    (tmp_path / "landing" / "events" / "2026-03-05" / "gone.jsonl").symlink_to(tmp_path / "nowhere")

    requests, cursor, _ = tick(instance, lake)
    assert [r.partition_key for r in requests] == ["2026-03-03"]
    _, _, skip = tick(instance, lake, cursor)
    for named in (
        "landing/events/2026-09-31: not a calendar date",
        "landing/events/latest: not an arrival date",
        "landing/events/2026-13-40: not a calendar date",
        "landing/events/20261001: not an arrival date",
        "landing/events/1999-01-01: before the first partition",
        "landing/events/2999-01-01: after the last partition",
        "landing/events/2026-03-04: no files to ingest",
        "landing/events/stray.jsonl: a file outside any arrival-date folder",
        "landing/clicks: not a source",
        "landing/events/2026-03-05/gone.jsonl: cannot be read",
    ):
        assert named in skip, named
