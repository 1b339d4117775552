"""The run launcher of refinery's instance: Dagster's default one, plus a worker health check.

Dagster's run monitoring marks a STARTED run failed when the run launcher reports its worker
dead, but `DefaultRunLauncher` cannot say (it has no health check). Without one, a run whose
process died outside the code server's sight (the daemon or `dagster dev` killed with its
runs, a `dagster asset materialize` killed by the OOM killer or ^C twice) stays STARTED
forever, holds its place in the run queue (`max_concurrent_runs: 1`) and its pool slot, and
every later run waits.

The run worker is the process that wrote the run's RUN_START event: its pid is in that event.
Everything refinery runs, runs on one machine (README), so the check looks the pid up here:
gone, a zombie, or a newer process that reused the number (it started after the run did)
means the worker is dead. `dagster_home/dagster.yaml` configures this launcher and run
monitoring (`max_resume_run_attempts: 0`: a dead run is failed, not resumed).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

# A worker starts before its RUN_START event. /proc start times are clock ticks since boot,
# turned into wall time with today's boot time: a clock stepped since the run started shifts
# them. The slack keeps such a shift from failing a live run; a pid reused within it is
# missed (the run then waits for an operator, as without this check).
START_SLACK_SECONDS = 30.0


def process_start_time(pid: int) -> float | None:
    """When the process `pid` started (epoch seconds), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat.rsplit(")", 1)[1].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def worker_status(pid: int, run_started_at: float) -> tuple[WorkerStatus, str]:
    """Whether the process that started a run at `run_started_at` is still alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return WorkerStatus.FAILED, f"run worker process {pid} is gone"
    except PermissionError:
        pass  # exists, another user's
    if process_state(pid) == "Z":
        return WorkerStatus.FAILED, f"run worker process {pid} exited (zombie)"
    started = process_start_time(pid)
    if started is not None and started > run_started_at + START_SLACK_SECONDS:
        return WorkerStatus.FAILED, (
            f"run worker process {pid} is gone: that pid now belongs to a process started "
            f"{started - run_started_at:.0f} s after the run"
        )
    return WorkerStatus.RUNNING, f"run worker process {pid} is alive"


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose runs run monitoring can check (see the module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.RUN_START, limit=1
        ).records
        event = records[0].event_log_entry if records else None
        pid = event.dagster_event.pid if event and event.dagster_event else None
        if event is None or pid is None:
            # STARTED is set by that event; without it there is nothing to judge by, and any
            # status but RUNNING would make run monitoring fail the run
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no RUN_START event with a pid")
        status, message = worker_status(pid, event.timestamp)
        return CheckRunHealthResult(status, message, run_worker_id=str(pid))
