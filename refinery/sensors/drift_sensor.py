"""`drift_sensor`: rebuild the training set when the latest drift report says "drift".

A tick reads one event-log record (the latest `ml/feature_drift_report` materialization) and
its metadata: no data is scanned, so ticks stay cheap.

A rebuild is keyed on the state it would act on, not on the report that showed it: the
reference version the report compared against, the feature dates it compared
(`current_window`: the drift evidence) and the newest labelled as-of date
(`examples_through`: the data a rebuild would use). One state requests one
`training_set_job` run, ever: the run key is `drift-<state>` and the sensor first looks in the
run storage for a run tagged with that state. Both live in the Dagster instance, not in the
cursor, so a lost or reset cursor requests nothing twice. A refreshed report with the same
verdict over the same inputs (what a rebuild that published nothing used to cause, once a
minute, forever) is the same state; a new gold day or a new reference is a new one.

Before anything is published (`latest_version()` is None) the sensor bootstraps version 1 once
enough labelled as-of dates exist in gold `training_examples` for the training window, in one
`training_set_bootstrap_job` run that also writes the first report against it.
"""

from __future__ import annotations

import hashlib
from datetime import date

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from refinery.assets.ml.drift.report import VERDICT_DRIFT
from refinery.assets.ml.drift_report import (
    EXAMPLES_MODEL,
    REPORT_KEY,
    TRAINING_SET_KEY,
    as_of_dates,
)
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths
from refinery.sensors import sensor_interval

BOOTSTRAP_RUN_KEY = "bootstrap-v1"
STATE_TAG = "refinery/drift_state"

training_set_job = define_asset_job(
    "training_set_job",
    selection=AssetSelection.assets(TRAINING_SET_KEY),
    description="Build, split, profile and publish a new training set version.",
)
# Version 1, then the first drift report against it, in one run: a bootstrap always publishes
# (there is no version yet), so the report it is followed by is never a refresh for nothing, and
# one run launch (~12 s of queue, process start and imports) is saved. A rebuild stays
# training_set_job alone: drift_report_automation refreshes the report only when a rebuild
# published a new version.
bootstrap_job = define_asset_job(
    "training_set_bootstrap_job",
    selection=AssetSelection.assets(TRAINING_SET_KEY, REPORT_KEY),
    description="Publish training-set version 1, then the first drift report against it "
    "(what drift_sensor requests when nothing is published yet).",
)


def required_labelled_days() -> int:
    """Labelled as-of dates the training set's window needs (REFINERY_TRAINING_WINDOW_DAYS)."""
    from refinery.assets.ml.training_dataset import TrainingDatasetConfig

    return TrainingDatasetConfig().window_days


def _latest_version(lake: LakePaths) -> str | None:
    from refinery.resources.registry import latest_tag

    return latest_tag(lake.registry)


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
        job_name=bootstrap_job.name,
        tags={"refinery/trigger": "bootstrap", "refinery/labelled_days": str(labelled)},
    )


def drift_state(metadata: dict) -> dict[str, str]:
    """What a rebuild would act on, from the report's metadata: the reference it compared
    against, the feature dates it compared and the newest labelled as-of date."""
    return {
        "reference_version": str(_metadata_value(metadata, "reference_version")),
        "current_window": str(_metadata_value(metadata, "current_window")),
        "examples_through": str(_metadata_value(metadata, "examples_through")),
    }


def state_key(state: dict[str, str]) -> str:
    """A short stable id of a drift state (run keys and tags stay readable)."""
    text = "|".join(f"{name}={state[name]}" for name in sorted(state))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_for_state(context: SensorEvaluationContext, key: str):
    runs = context.instance.get_runs(RunsFilter(tags={STATE_TAG: key}), limit=1)
    return runs[0] if runs else None


@sensor(
    name="drift_sensor",
    jobs=[training_set_job, bootstrap_job],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval(),
    description=(
        "Requests one training-set rebuild per drift state (reference version, compared feature "
        "dates, newest labelled date) whose report says drift; bootstraps version 1 when nothing "
        "is published and enough labelled days exist."
    ),
)
def drift_sensor(context: SensorEvaluationContext, lake: LakeResource):
    paths = lake.paths
    if _latest_version(paths) is None:
        return bootstrap_request(paths)

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
    state = drift_state(metadata)
    if verdict != VERDICT_DRIFT:
        return SkipReason(
            f"drift report {storage_id}: verdict {verdict!r} (drift share {share}, "
            f"reference {state['reference_version']}); nothing to rebuild"
        )
    key = state_key(state)
    described = ", ".join(f"{name} {value}" for name, value in state.items())
    earlier = _run_for_state(context, key)
    if earlier is not None:
        return SkipReason(
            f"drift report {storage_id}: drift again, but nothing changed since run "
            f"{earlier.run_id} ({earlier.status.value}) was requested for this state "
            f"({described}); the next gold day or a new reference version is a new state"
        )
    return RunRequest(
        run_key=f"drift-{key}",
        job_name=training_set_job.name,
        tags={
            "refinery/trigger": "drift",
            "refinery/drift_share": f"{float(share or 0):.4f}",
            "refinery/report_storage_id": str(storage_id),
            "refinery/reference_version": state["reference_version"],
            "refinery/current_window": state["current_window"],
            "refinery/examples_through": state["examples_through"],
            STATE_TAG: key,
        },
    )
