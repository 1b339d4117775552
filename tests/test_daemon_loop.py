"""The retraining loop under the real `dagster-daemon`, with nobody materializing in between.

History is ingested first (as an operator's backfill would); from then on only the daemon acts:
drift_sensor bootstraps version 1, landing_sensor ingests each new day, automation refreshes the
drift report, and a drift verdict makes drift_sensor publish a new training-set version.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

# The default 28-day training window (8 train days, so the reference spans every weekday) after
# the 30-day feature warm-up and 10 days of label delay = 67 days of history, kept small; a
# 2-day drift window on one key feature, and a price shock nobody could miss. (A 1-day train
# split compares one weekday with another and raises false alarms on weekly seasonality.)
ENV = {
    "REFINERY_SENSOR_INTERVAL_SECONDS": "2",
    "REFINERY_LANDING_SETTLE_SECONDS": "1",
}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import date, timedelta
    from pathlib import Path
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
    from refinery import demo
    from refinery.resources.lake import LakePaths, data_dir_from_env

    plan = demo.Plan(
        history_days=67, live_days=2, drift_from_day=68, users=500, events_per_day=3000, seed=3,
        drift="covariate",
        synth_args=("--drift-price-level", "3.0", "--drift-device-mix", "0.9"),
        drift_env=(("REFINERY_DRIFT_WINDOW_DAYS", "2"), ("REFINERY_DRIFT_KEY_FEATURES", "spend_1d")),
    )
    paths = LakePaths(data_dir_from_env())
    start = date(2026, 6, 1)
    demo.synth(plan, start, 0, plan.history_days)
    demo.ingest_history(plan, start)
    demo.gold_range(start, start + timedelta(days=plan.history_days - 1))
    daemon = demo.start_daemon(Path(sys.argv[1]), plan)
    try:
        rows = demo.live_loop(plan, start, paths.registry)
    finally:
        demo.stop(daemon)
    instance = DagsterInstance.get()
    runs = [
        {"job": r.job_name, "status": r.status.value, "tags": dict(r.tags)}
        for r in instance.get_runs(RunsFilter())
    ]
    versions = [v.tag for v in demo.published_versions(paths.registry)]
    print("RESULT " + json.dumps({"rows": rows, "runs": runs, "versions": versions}))
    """
)


def test_landing_to_new_training_set_version_without_a_person(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        **ENV,
        "REFINERY_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
    }
    log = tmp_path / "daemon.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    daemon_log = log.read_text()[-4000:] if log.exists() else "(no daemon log)"
    assert proc.returncode == 0, proc.stderr[-4000:] + "\n--- daemon ---\n" + daemon_log
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    rows, runs, versions = result["rows"], result["runs"], result["versions"]
    calm, drifted = rows

    # version 1 was bootstrapped by the sensor, and a calm day made no new version
    assert calm["verdict"] == "no_drift", calm
    assert calm["versions_now"] == 1
    # the drifted day: a drift verdict, and a new version published from it
    assert drifted["verdict"] == "drift", drifted
    assert drifted["versions_now"] == 2
    assert versions == ["training_set@v1.0.0", "training_set@v2.0.0"]

    # every run after the history came from a sensor, with a reason
    by_trigger = {}
    for run in runs:
        trigger = run["tags"].get("refinery/trigger")
        by_trigger.setdefault(trigger, []).append(run)
    assert [r["status"] for r in by_trigger["bootstrap"]] == ["SUCCESS"]
    assert len(by_trigger["landing"]) == 2 and all(
        r["status"] == "SUCCESS" for r in by_trigger["landing"]
    )
    (drift_run,) = by_trigger["drift"]
    assert drift_run["status"] == "SUCCESS" and float(drift_run["tags"]["refinery/drift_share"]) > 0
    assert (
        drift_run["tags"]["dagster/run_key"] == f"drift-{drift_run['tags']['refinery/drift_state']}"
    )
