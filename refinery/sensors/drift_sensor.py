"""`drift_sensor`: rebuild the training set when the latest drift report says "drift".

A tick reads one event-log record (the latest `ml/feature_drift_report` materialization) and
its metadata: no data is scanned, so ticks stay cheap. The cursor is the storage id of the last
report acted on, and the run key is tied to that storage id, so one report triggers at most one
run even if the cursor were lost. The rebuilt training set becomes the new reference profile,
so the next report compares against it: no retraining loop.

Before anything is published (`latest_version()` is None) the sensor bootstraps version 1 once
enough labelled as-of dates exist in gold `training_examples` for the training window.
"""

from __future__ import annotations

from datetime import date

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from refinery.assets.ml.drift import VERDICT_DRIFT
from refinery.assets.ml.drift_report import EXAMPLES_MODEL, REPORT_KEY, as_of_dates
from refinery.resources.lake import LakePaths, data_dir_from_env
from refinery.sensors import sensor_interval

TRAINING_SET_KEY = AssetKey(["ml", "training_dataset"])
BOOTSTRAP_RUN_KEY = "bootstrap-v1"

training_set_job = define_asset_job(
    "training_set_job",
    selection=AssetSelection.assets(TRAINING_SET_KEY),
    description="Build, split, profile and publish a new training set version.",
)


def required_labelled_days() -> int:
    """Labelled as-of dates the training set's window needs (REFINERY_TRAINING_WINDOW_DAYS)."""
    from refinery.assets.ml.training_dataset import TrainingDatasetConfig

    return TrainingDatasetConfig().window_days


def _latest_version(lake: LakePaths) -> str | None:
    from refinery.datasets import latest_version

    return latest_version(registry=lake.registry)


def _metadata_value(metadata: dict, key: str):
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def bootstrap_request(lake: LakePaths) -> RunRequest | SkipReason:
    from refinery.assets.ml.splits import with_full_feature_window
    from refinery.assets.ml.training_dataset import TrainingDatasetConfig, first_arrival

    dates = [date.fromisoformat(d) for d in as_of_dates(lake, EXAMPLES_MODEL)]
    warmup = TrainingDatasetConfig().feature_warmup_days
    labelled = len(with_full_feature_window(dates, first_arrival(lake), warmup))
    needed = required_labelled_days()
    if labelled < needed:
        return SkipReason(
            f"no training set published yet and only {labelled} labelled as-of dates with a "
            f"full {warmup}-day feature window in {lake.gold_dir(EXAMPLES_MODEL)}; "
            f"bootstrapping version 1 needs {needed}"
        )
    return RunRequest(
        run_key=BOOTSTRAP_RUN_KEY,
        tags={"refinery/trigger": "bootstrap", "refinery/labelled_days": str(labelled)},
    )


@sensor(
    name="drift_sensor",
    target=training_set_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval(),
    description=(
        "Requests one training-set rebuild per drift report whose verdict is drift; "
        "bootstraps version 1 when nothing is published and enough labelled days exist."
    ),
)
def drift_sensor(context: SensorEvaluationContext):
    lake = LakePaths(data_dir_from_env())
    if _latest_version(lake) is None:
        return bootstrap_request(lake)

    records = context.instance.fetch_materializations(REPORT_KEY, limit=1).records
    if not records:
        return SkipReason("ml/feature_drift_report has never been materialized")
    record = records[0]
    storage_id = record.storage_id
    processed = int(context.cursor) if context.cursor else 0
    if storage_id <= processed:
        return SkipReason(f"drift report {storage_id} was already handled; no newer report")

    context.update_cursor(str(storage_id))
    materialization = record.asset_materialization
    metadata = dict(materialization.metadata) if materialization else {}
    verdict = _metadata_value(metadata, "verdict")
    share = _metadata_value(metadata, "drift_share")
    reference = _metadata_value(metadata, "reference_version")
    if verdict != VERDICT_DRIFT:
        return SkipReason(
            f"drift report {storage_id}: verdict {verdict!r} (drift share {share}, "
            f"reference {reference}); nothing to rebuild"
        )
    return RunRequest(
        run_key=f"drift-report-{storage_id}",
        tags={
            "refinery/trigger": "drift",
            "refinery/drift_share": f"{float(share or 0):.4f}",
            "refinery/report_storage_id": str(storage_id),
            "refinery/reference_version": str(reference),
        },
    )
