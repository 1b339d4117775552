"""Drift that persists with no new data requests one rebuild, not one a minute.

The operator's loop: drift_sensor started training_set_job, which published nothing but
materialized ml/training_dataset; the report automation refreshed the report, the verdict was
the same, and drift_sensor started the job again, forever. Here the drifted lake is built once
with direct materializations (no dbt: small gold Parquet written like gold writes it), then
the real dagster-daemon runs the three sensors for a bounded number of ticks.
"""

import os
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    MetadataValue,
    RunsFilter,
    evaluate_automation_conditions,
    materialize,
)

from refinery.assets.ml.drift_report import REPORT_KEY, TRAINING_SET_KEY, feature_drift_report
from refinery.assets.ml.training_dataset import training_dataset
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths, write_parquet_atomic
from refinery.resources.registry import DvcRegistry
from tests.daemon_helpers import stop_daemon, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
START = date(2025, 1, 1)
DAYS = [(START + timedelta(days=i)).isoformat() for i in range(24)]
FEATURES_KEY = AssetKey(["gold", "user_daily_features"])
# The smallest training set the split rule allows (3 validation, 3 test, two 7-day gaps, 1+
# train), a 1-day warm-up, and the one key feature the fixture shifts.
ENV = {
    "REFINERY_TRAINING_WINDOW_DAYS": "21",
    "REFINERY_FEATURE_WARMUP_DAYS": "1",
    "REFINERY_DRIFT_WINDOW_DAYS": "7",
    "REFINERY_DRIFT_KEY_FEATURES": "spend_7d",
    "REFINERY_SENSOR_INTERVAL_SECONDS": "1",
    "REFINERY_LANDING_SETTLE_SECONDS": "1",
}
TICKS_AFTER_REBUILD = 8
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def examples(day_index: int, mean: float, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(day_index)
    return pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "as_of_date": [START + timedelta(days=day_index)] * n,
            "spend_7d": rng.normal(mean, 10, n),
            "plan": rng.choice(["free", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
            "label": (rng.random(n) < 0.2).astype(np.int8),
        }
    )


def write_lake(root: Path) -> None:
    """gold training_examples and user_daily_features for DAYS, silver's first arrival date."""
    lake = LakePaths(root)
    write_parquet_atomic(
        pl.DataFrame({"event_id": ["e"]}), lake.partition_file("silver", "events", DAYS[0])
    )
    for i, day in enumerate(DAYS):
        frame = examples(i, mean=50.0)
        for model, data in (
            ("training_examples", frame),
            ("user_daily_features", frame.drop("label")),
        ):
            write_parquet_atomic(data, lake.gold_dir(model) / f"as_of_date={day}" / "data.parquet")


def shift_recent_features(root: Path, days: int) -> None:
    """The shop drifts in the newest feature days; the labelled examples stay as they were."""
    lake = LakePaths(root)
    for i, day in list(enumerate(DAYS))[-days:]:
        frame = examples(i, mean=75.0).drop("label")
        write_parquet_atomic(
            frame, lake.gold_dir("user_daily_features") / f"as_of_date={day}" / "data.parquet"
        )


def test_report_automation_ignores_a_rebuild_that_published_nothing():
    """The automation condition itself, tick by tick, on recorded materializations."""
    instance = DagsterInstance.ephemeral()
    defs = Definitions(assets=[feature_drift_report], resources={"lake": LakeResource()})

    def tick(cursor):
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        return result.total_requested, result.cursor

    def record(key, **metadata):
        values = {
            k: MetadataValue.text(v) if isinstance(v, str) else MetadataValue.bool(v)
            for k, v in metadata.items()
        }
        instance.report_runless_asset_event(AssetMaterialization(asset_key=key, metadata=values))

    requested, cursor = tick(None)
    assert requested == 0
    record(TRAINING_SET_KEY, version_tag="training_set@v1.0.0", new_version=True)
    requested, cursor = tick(cursor)
    assert requested == 1  # a first version: the report has no reference yet
    record(REPORT_KEY, reference_version="training_set@v1.0.0", verdict="drift")
    for _ in range(3):  # rebuilds that published nothing: the latest version is still v1
        record(TRAINING_SET_KEY, version_tag="training_set@v1.0.0", new_version=False)
        requested, cursor = tick(cursor)
        assert requested == 0
    record(FEATURES_KEY)  # a new gold day
    requested, cursor = tick(cursor)
    assert requested == 1
    record(REPORT_KEY, reference_version="training_set@v1.0.0", verdict="drift")
    requested, cursor = tick(cursor)
    assert requested == 0
    record(TRAINING_SET_KEY, version_tag="training_set@v2.0.0", new_version=True)
    requested, cursor = tick(cursor)
    assert requested == 1


def sensor_ticks(instance: DagsterInstance, name: str) -> list:
    for state in instance.all_instigator_state():
        if state.name == name:
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
    return []


@pytest.fixture
def drifted_lake(tmp_path, monkeypatch):
    """Version 1 published from calm data, then the recent feature days shifted and reported."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    root, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("REFINERY_DATA_DIR", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    resources = {"lake": LakeResource(data_dir=str(root)), "dvc_registry": DvcRegistry()}
    with DagsterInstance.get() as instance:
        write_lake(root)
        published = materialize([training_dataset], instance=instance, resources=resources)
        metadata = published.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["version_tag"].value == "training_set@v1.0.0"
        shift_recent_features(root, days=7)
        report = materialize([feature_drift_report], instance=instance, resources=resources)
        metadata = report.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["verdict"].value == "drift"
    return root, home


@pytest.mark.usefixtures("drifted_lake")
def test_persistent_drift_with_no_new_data_rebuilds_once_under_the_daemon(tmp_path):
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        ["dagster-daemon", "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=dict(os.environ),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with DagsterInstance.get() as instance:
            reports_before = len(instance.fetch_materializations(REPORT_KEY, limit=100).records)

            def drift_runs():
                return instance.get_runs(RunsFilter(tags={"refinery/trigger": "drift"}))

            def rebuild_done():
                runs = drift_runs()
                return runs and all(r.status in FINISHED for r in runs) and runs

            [rebuild] = wait_for("the drift-triggered rebuild", rebuild_done, 300, daemon, log)
            assert rebuild.status == DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
            ticks_at_end = len(sensor_ticks(instance, "drift_sensor"))
            wait_for(
                f"{TICKS_AFTER_REBUILD} more drift_sensor ticks",
                lambda: (
                    len(sensor_ticks(instance, "drift_sensor"))
                    >= ticks_at_end + TICKS_AFTER_REBUILD
                ),
                120,
                daemon,
                log,
            )
            automation_ticks = len(sensor_ticks(instance, "drift_report_automation"))

            # exactly one rebuild, and it published nothing (the loop's starting point)
            ticks = sensor_ticks(instance, "drift_sensor")
            history = [(t.status.value, t.skip_reason, t.run_keys) for t in reversed(ticks)]
            assert len(drift_runs()) == 1, (
                [(r.run_id, r.status.value, r.tags) for r in drift_runs()],
                history,
                len(instance.fetch_materializations(REPORT_KEY, limit=100).records)
                - reports_before,
            )
            assert instance.get_runs(RunsFilter(job_name="training_set_job"), limit=10) == [rebuild]
            latest = instance.fetch_materializations(TRAINING_SET_KEY, limit=1).records[0]
            assert latest.run_id == rebuild.run_id
            assert latest.asset_materialization.metadata["new_version"].value is False
            # the report was not refreshed by a rebuild that changed nothing
            assert automation_ticks >= 3
            assert (
                len(instance.fetch_materializations(REPORT_KEY, limit=100).records)
                == reports_before
            )
            latest_ticks = sensor_ticks(instance, "drift_sensor")[:TICKS_AFTER_REBUILD]
            assert not any(t.run_keys for t in latest_ticks)
            # a tick still in progress has no skip reason yet; every finished one says why
            skips = [t.skip_reason or "" for t in latest_ticks if t.status.value != "STARTED"]
            assert len(skips) >= TICKS_AFTER_REBUILD - 1
            assert all("already handled" in s or "nothing changed" in s for s in skips), skips
    finally:
        stop_daemon(daemon)
