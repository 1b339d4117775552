"""One platform stage, run through Dagster in a fresh process, timed from inside the process.

    python -m bench.stage STAGE --data-dir DIR --dagster-home DIR --first D --last D [--json OUT]

STAGE is one of: imports, bronze, silver, gold, training, drift, ingest (all three layers),
bronze-backfill, silver-backfill (that layer over the range in one run). The
process sets the data root and DAGSTER_HOME before importing the code location (resources read
them at import), reports how long that import took (`import_seconds`), then runs the stage the
way the platform runs it: bronze and silver as one ingest_job run per arrival date (asset
selection of that layer), gold as one run over the range (a backfill: one dbt build), the
training set through training_set_job and the
drift report as an asset materialization. `seconds` is the wall time of the stage's runs only;
the parent reads the peak RSS of this process from the OS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import date, timedelta

STARTED = time.perf_counter()
STAGES = ("imports", "bronze", "silver", "gold", "training", "drift", "ingest")
# bronze and silver over the range in one run (a backfill, as the UI or
# `dagster asset materialize --partition-range` starts it), not one run per date
BACKFILL_STAGES = ("bronze-backfill", "silver-backfill")
TABLES = ("events", "users", "products")


def days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def step_seconds(result) -> dict[str, float]:
    """Seconds from a step's first to last event-log entry: a rough diagnostic. Steps that wait
    for another step (the gold contract checks wait for dbt) include the wait."""
    try:
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for entry in _instance_logs(result):
            if entry.step_key:
                first.setdefault(entry.step_key, entry.timestamp)
                last[entry.step_key] = entry.timestamp
        return {step: round(last[step] - first[step], 3) for step in first}
    except Exception as error:  # noqa: BLE001 - a diagnostic must never fail the benchmark
        return {"error": repr(error)}


def _instance_logs(result):
    from dagster import DagsterInstance

    return DagsterInstance.get().all_logs(result.run_id)


def run_stage(stage: str, first: date, last: date, training_config: dict) -> dict:
    from dagster import AssetKey, DagsterInstance

    from refinery.definitions import defs
    from refinery.sensors.landing_sensor import GOLD_KEYS

    import_seconds = time.perf_counter() - STARTED
    instance = DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    runs: list[dict] = []

    def timed(label: str, execute) -> None:
        started = time.perf_counter()
        result = execute()
        seconds = time.perf_counter() - started
        if not result.success:
            failures = [
                e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
            ]
            raise SystemExit(f"bench stage {stage} run {label} failed: {failures[:1]}")
        runs.append({"run": label, "seconds": round(seconds, 3), "steps": step_seconds(result)})

    ingest = defs.resolve_job_def("ingest_job")

    def ingest_run(label: str, **kwargs) -> None:
        timed(
            label,
            lambda: ingest.execute_in_process(
                instance=instance, run_config=quiet, raise_on_error=False, **kwargs
            ),
        )

    def range_tags() -> dict:
        return {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }

    if stage in ("bronze", "silver"):
        selection = [AssetKey([stage, t]) for t in TABLES]
        for day in days(first, last):
            ingest_run(day, partition_key=day, asset_selection=selection)
    elif stage in BACKFILL_STAGES:
        layer = stage.removesuffix("-backfill")
        selection = [AssetKey([layer, t]) for t in TABLES]
        ingest_run(f"{first}..{last}", asset_selection=selection, tags=range_tags())
    elif stage == "ingest":
        # what landing_sensor requests for a new arrival date: bronze, silver and gold in one run
        for day in days(first, last):
            ingest_run(day, partition_key=day)
    elif stage == "gold":
        # one run over the range, as `dagster asset materialize --partition-range` or a UI
        # backfill starts it; the asset plans its own dbt builds
        ingest_run(
            f"{first}..{last}",
            asset_selection=GOLD_KEYS,
            tags=range_tags(),
        )
    elif stage == "training":
        job = defs.resolve_job_def("training_set_job")
        config = {**quiet, "ops": {"ml__training_dataset": {"config": training_config}}}
        timed(
            "training_set_job",
            lambda: job.execute_in_process(
                instance=instance, run_config=config, raise_on_error=False
            ),
        )
    elif stage == "drift":
        job = defs.resolve_implicit_global_asset_job_def()
        timed(
            "ml/feature_drift_report",
            lambda: job.execute_in_process(
                instance=instance,
                asset_selection=[AssetKey(["ml", "feature_drift_report"])],
                run_config=quiet,
                raise_on_error=False,
            ),
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "stage": stage,
        # KiB on Linux; dbt runs DuckDB in a child process, whose peak is reported apart
        "maxrss_self_kb": own,
        "maxrss_children_kb": children,
        "import_seconds": round(import_seconds, 3),
        "seconds": round(sum(r["seconds"] for r in runs), 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES + BACKFILL_STAGES)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dagster-home", required=True)
    parser.add_argument("--first", type=date.fromisoformat, required=True)
    parser.add_argument("--last", type=date.fromisoformat, required=True)
    parser.add_argument("--training-config", default="{}", help="TrainingDatasetConfig as JSON")
    parser.add_argument("--json", help="write the result here (else stdout)")
    args = parser.parse_args()
    os.environ["REFINERY_DATA_DIR"] = args.data_dir
    os.environ["DAGSTER_HOME"] = args.dagster_home
    result = run_stage(args.stage, args.first, args.last, json.loads(args.training_config))
    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
