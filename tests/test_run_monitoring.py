"""A run whose process died is failed by run monitoring, and the queue moves on by itself.

The instance is a temp DAGSTER_HOME seeded from dagster_home/dagster.yaml (only the poll and
slot-freeing intervals shortened). A `dagster asset materialize` of the drift report SIGKILLs
itself at the kill point `drift_report.before_write`: no code server watches a CLI run, so
before run monitoring it stayed STARTED forever and, with max_concurrent_runs 1, no queued
run started again. The test queues a second run with `dagster job launch` and waits, doing
nothing else: the daemon must fail the dead run, free the pool slot it held and run the
second one to success.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from refinery.assets.ml.drift_report import REPORT_KEY
from refinery.faults import KILL_ENV
from tests.daemon_helpers import stop_daemon, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "dvc_registry"


def seeded_home(path: Path) -> Path:
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    path.mkdir()
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def test_killed_run_is_failed_its_slot_freed_and_the_queue_moves_on(tmp_path, monkeypatch):
    home = seeded_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REFINERY_SENSOR_INTERVAL_SECONDS", "5")
    env = dict(os.environ)

    killed = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "refinery.definitions",
            "--select",
            "ml/feature_drift_report",
        ],
        check=False,
        cwd=REPO,
        env={**env, KILL_ENV: "drift_report.before_write"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    instance = DagsterInstance.get()
    [dead] = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    # What a worker killed inside a pooled step leaves too: a claimed slot nobody will free.
    instance.event_log_storage.set_concurrency_slots(POOL, 1)
    claimed = instance.event_log_storage.claim_concurrency_slot(
        POOL, dead.run_id, "ml__training_dataset"
    )
    assert claimed.is_claimed

    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        launched = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                "workspace.yaml",
                "-j",
                "drift_report_job",
            ],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert launched.returncode == 0, launched.stderr[-2000:]
        [queued] = instance.get_runs(RunsFilter(job_name="drift_report_job"))

        def finished(run_id):
            run = instance.get_run_by_id(run_id)
            return run.is_finished and run

        failed = wait_for(
            "the dead run to be failed", lambda: finished(dead.run_id), 120, daemon, log
        )
        assert failed.status == DagsterRunStatus.FAILURE
        done = wait_for("the queued run", lambda: finished(queued.run_id), 240, daemon, log)
        assert done.status == DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
        wait_for(
            "the dead run's pool slot to be freed",
            lambda: not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots,
            60,
            daemon,
            log,
        )
    finally:
        stop_daemon(daemon)

    # the dead run was failed by the health check (before or after the second run was queued:
    # launching it takes the CLI several seconds, the monitoring poll may come first)
    messages = [e.message for e in instance.all_logs(dead.run_id)]
    assert any("run worker process" in m and "is gone" in m for m in messages), messages[-5:]
    report = instance.fetch_materializations(REPORT_KEY, limit=1).records[0]
    assert report.run_id == queued.run_id


def test_worker_status_of_live_dead_zombie_and_reused_pids():
    """The health check's judgement on real processes (no daemon needed)."""
    from dagster._core.launcher.base import WorkerStatus

    from refinery.launcher import worker_status

    started = time.time()
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert worker_status(child.pid, started)[0] == WorkerStatus.RUNNING
        child.kill()
        deadline = time.time() + 10
        while "zombie" not in worker_status(child.pid, started)[1] and time.time() < deadline:
            time.sleep(0.05)  # killed, not reaped yet: a zombie
        assert worker_status(child.pid, started) == (
            WorkerStatus.FAILED,
            f"run worker process {child.pid} exited (zombie)",
        )
    finally:
        child.kill()
        child.wait()
    status, message = worker_status(child.pid, started)
    assert status == WorkerStatus.FAILED and "is gone" in message
    # this process started long after a run that began an hour ago: its pid was reused
    status, message = worker_status(os.getpid(), time.time() - 3600)
    assert status == WorkerStatus.FAILED and "now belongs to a process started" in message
