"""drift_sensor ticks against a real instance, real report materializations and a real registry.

The lake is given through LakeResource(data_dir=...) while REFINERY_DATA_DIR points somewhere
else: the report and the sensor take their data root from the resource only.
"""

import json

import numpy as np
import polars as pl
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    MetadataValue,
    build_sensor_context,
    materialize,
)

from refinery.assets.ml.drift_report import (
    REPORT_KEY,
    TRAINING_SET_KEY,
    DriftReportConfig,
    feature_drift_report,
)
from refinery.assets.ml.profile import build_profile
from refinery.assets.ml.splits import content_md5, file_md5
from refinery.definitions import defs
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths, write_parquet_atomic
from refinery.resources.registry import DvcRegistry
from refinery.sensors.drift_sensor import STATE_TAG, drift_sensor

FEATURES = ["spend_7d", "plan"]
DAYS = [f"2025-03-{d:02d}" for d in range(1, 8)]


def features(seed: int, n: int = 1_000, mean: float = 50.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "spend_7d": rng.normal(mean, 10, n),
            "plan": rng.choice(["free", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
            "label": (rng.random(n) < 0.2).astype(np.int8),
        }
    )


def write_gold(root, model: str, days: list[str], mean: float = 50.0) -> None:
    lake = LakePaths(root)
    for i, day in enumerate(days):
        frame = features(i, mean=mean).with_columns(as_of_date=pl.lit(day).str.to_date())
        if model == "user_daily_features":
            frame = frame.drop("label")
        write_parquet_atomic(frame, lake.gold_dir(model) / f"as_of_date={day}" / "data.parquet")


def publish_reference(root) -> str:
    """Publish a tiny training set (splits, profile, metadata) through the real DVC registry."""
    train = features(100, n=5_000)
    source = root / "staging-training-set"
    source.mkdir()
    for split in ("train", "validation", "test"):
        write_parquet_atomic(train, source / f"{split}.parquet")
    (source / "profile.json").write_text(json.dumps(build_profile(train, FEATURES)))
    files = {n: file_md5(source / n) for n in sorted(p.name for p in source.iterdir())}
    split_info = {"rows": train.height, "label_rate": float(train["label"].mean())}
    metadata = {
        "files": files,
        "content_md5": content_md5(files),
        "splits": {s: split_info for s in ("train", "validation", "test")},
    }
    (source / "metadata.json").write_text(json.dumps(metadata))
    lake = LakePaths(root)
    registry = DvcRegistry(registry_dir=str(lake.registry), remote_url=str(lake.dvc_remote))
    return registry.snapshot(source).tag


@pytest.fixture(scope="module")
def published_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    publish_reference(root)
    return root


@pytest.fixture(autouse=True)
def data_dir_env_points_elsewhere(tmp_path_factory, monkeypatch):
    """An empty data root in REFINERY_DATA_DIR: reading it would find no registry, no gold."""
    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path_factory.mktemp("not-the-lake")))


def record_report(
    instance,
    verdict: str,
    share: float = 0.75,
    reference: str = "training_set@v1.0.0",
    window: str = "2025-03-01..2025-03-07",
    examples_through: str = "2025-02-25",
) -> int:
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=REPORT_KEY,
            metadata={
                "verdict": MetadataValue.text(verdict),
                "drift_share": MetadataValue.float(share),
                "reference_version": MetadataValue.text(reference),
                "current_window": MetadataValue.text(window),
                "examples_through": MetadataValue.text(examples_through),
            },
        )
    )
    return instance.fetch_materializations(REPORT_KEY, limit=1).records[0].storage_id


def tick(instance, root, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(data_dir=str(root))}
    )
    return drift_sensor.evaluate_tick(context)


def launch_like_the_daemon(instance, request) -> None:
    """What the daemon does with a RunRequest: a run of training_set_job with its tags."""
    job = defs.resolve_job_def("training_set_job")
    instance.create_run_for_job(job, tags={**request.tags, "dagster/run_key": request.run_key})


def test_bootstrap_waits_for_enough_labelled_days_then_requests_version_1(tmp_path, monkeypatch):
    monkeypatch.setenv("REFINERY_TRAINING_WINDOW_DAYS", "5")
    instance = DagsterInstance.ephemeral()
    write_gold(tmp_path, "training_examples", DAYS[:3])
    # history began 29 days before DAYS[1]: DAYS[0] lacks a full 30-day feature window
    first_arrival = LakePaths(tmp_path).partition_file("silver", "events", "2025-02-01")
    write_parquet_atomic(pl.DataFrame({"event_id": ["e"]}), first_arrival)
    write_gold(tmp_path, "training_examples", DAYS[:4])
    waiting = tick(instance, tmp_path)
    assert not waiting.run_requests
    assert (
        "only 3 labelled as-of dates with a full 30-day feature window" in waiting.skip_message
        and "needs 5" in waiting.skip_message
    )

    write_gold(tmp_path, "training_examples", DAYS[:6])
    ready = tick(instance, tmp_path)
    [request] = ready.run_requests
    assert request.run_key == "bootstrap-v1"
    assert request.tags["refinery/trigger"] == "bootstrap"
    # version 1 and the first report against it in one run
    assert request.job_name == "training_set_bootstrap_job"
    assert defs.resolve_job_def(request.job_name).asset_layer.selected_asset_keys == {
        TRAINING_SET_KEY,
        REPORT_KEY,
    }


def test_one_run_per_drift_state_and_skip_reasons(published_root):
    instance = DagsterInstance.ephemeral()
    root = published_root

    nothing = tick(instance, root)
    assert "never been materialized" in nothing.skip_message

    calm_id = record_report(instance, "no_drift", share=0.0)
    calm = tick(instance, root)
    assert not calm.run_requests and "'no_drift'" in calm.skip_message
    assert calm.cursor == str(calm_id)

    drift_id = record_report(instance, "drift", share=0.75)
    drifted = tick(instance, root, cursor=calm.cursor)
    [request] = drifted.run_requests
    assert request.run_key.startswith("drift-")
    assert request.job_name == "training_set_job"  # a rebuild alone; no report refresh
    assert request.tags["refinery/trigger"] == "drift"
    assert request.tags["refinery/drift_share"] == "0.7500"
    assert request.tags["refinery/report_storage_id"] == str(drift_id)
    assert request.tags["refinery/reference_version"] == "training_set@v1.0.0"
    assert request.tags["refinery/current_window"] == "2025-03-01..2025-03-07"
    assert request.tags["refinery/examples_through"] == "2025-02-25"
    assert drifted.cursor == str(drift_id)
    launch_like_the_daemon(instance, request)

    again = tick(instance, root, cursor=drifted.cursor)
    assert not again.run_requests and "already handled" in again.skip_message

    # The rebuild published nothing, the report was refreshed anyway: same inputs, same state.
    refreshed_id = record_report(instance, "drift", share=0.75)
    refreshed = tick(instance, root, cursor=drifted.cursor)
    assert not refreshed.run_requests and "nothing changed since run" in refreshed.skip_message
    assert refreshed.cursor == str(refreshed_id)
    # A lost cursor changes nothing: the state lives in the run storage.
    assert not tick(instance, root, cursor=None).run_requests

    # A new gold day is new evidence and new labelled data: one more rebuild, once.
    record_report(instance, "drift", window="2025-03-02..2025-03-08", examples_through="2025-02-26")
    [next_day] = tick(instance, root, cursor=refreshed.cursor).run_requests
    assert next_day.run_key != request.run_key
    assert next_day.tags[STATE_TAG] != request.tags[STATE_TAG]
    launch_like_the_daemon(instance, next_day)
    # A new reference over the same data is a new state too (the report compared against it).
    record_report(
        instance,
        "drift",
        reference="training_set@v2.0.0",
        window="2025-03-02..2025-03-08",
        examples_through="2025-02-26",
    )
    [new_reference] = tick(instance, root).run_requests
    assert new_reference.tags["refinery/reference_version"] == "training_set@v2.0.0"
    launch_like_the_daemon(instance, new_reference)
    assert not tick(instance, root).run_requests

    no_ref_id = record_report(instance, "no_reference", share=0.0)
    no_ref = tick(instance, root)
    assert not no_ref.run_requests and "'no_reference'" in no_ref.skip_message
    assert no_ref.cursor == str(no_ref_id)


def test_real_report_materialization_drives_the_sensor(published_root):
    instance = DagsterInstance.ephemeral()
    write_gold(published_root, "user_daily_features", DAYS, mean=56.0)  # +0.6 std on spend_7d
    write_gold(published_root, "training_examples", DAYS[:3])

    config = {"ops": {"ml__feature_drift_report": {"config": {"key_features": ["spend_7d"]}}}}
    lake = LakeResource(data_dir=str(published_root))
    result = materialize(
        [feature_drift_report], instance=instance, run_config=config, resources={"lake": lake}
    )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["verdict"].value == "drift"
    assert metadata["reference_version"].value == "training_set@v1.0.0"
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "drift_verdict" and not check.passed
    assert check.severity.value == "WARN" and "spend_7d" in check.description
    share = metadata["drift_share"].value
    assert share == round(share, 4) and check.metadata["drift_share"].value == share
    assert metadata["current_window"].value == f"{DAYS[0]}..{DAYS[-1]}"
    assert metadata["examples_through"].value == DAYS[2]
    assert "data:image/svg+xml;base64," in metadata["distribution_chart"].value
    assert "| spend_7d | numeric | **yes**" in metadata["top_drifted_features"].value
    report_path = metadata["report_path"].value
    assert report_path == str(published_root / "lake/ml/feature_drift_report/report.json")

    [request] = tick(instance, published_root).run_requests
    storage_id = instance.fetch_materializations(REPORT_KEY, limit=1).records[0].storage_id
    assert request.tags["refinery/report_storage_id"] == str(storage_id)
    assert request.tags["refinery/examples_through"] == DAYS[2]


def test_report_config_defaults_are_the_documented_ones():
    thresholds = DriftReportConfig().thresholds()
    assert (thresholds.psi, thresholds.jensen_shannon, thresholds.wasserstein) == (0.25, 0.1, 0.1)
    assert thresholds.drift_share == 0.5
