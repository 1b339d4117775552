"""The gold planner: what a run over knowledge (arrival) dates [min_date, max_date] covers,
before it runs. Pure date arithmetic over the dbt project's vars (dbt_project.yml), the signatures
of the silver partitions it reads, and the `dbt build` arguments that carry all of it.

- the knowledge dates of a partition time window (`knowledge_date_range`);
- the as-of dates it rewrites per mart (`as_of_dates_for`: labels lag by `label_delay_days`);
- the arrival dates it reads (`read_window_start`), and their on-disk signatures
  (`arrival_signatures`), so dbt re-aggregates only what changed;
- the `dbt build` of the run (`dbt_build`): its command line and the run's own values.

Which silver partitions the gate checks is `gate.silver_reads`; how the project is prepared and
its assets named is `dbt_project`; the Dagster asset that runs the plan is `assets`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from refinery.assets.gold.dbt_project import dbt_project_vars, duckdb_threads, vars_arg
from refinery.resources.lake import LakePaths, part_signature

FEATURE_MART = "user_daily_features"
LABELLED_MARTS = ("labels", "training_examples")
MARTS = (FEATURE_MART, *LABELLED_MARTS)


def label_delay_days() -> int:
    """A label for as-of D is final, and written, in the run of knowledge date D + this."""
    project_vars = dbt_project_vars()
    return int(project_vars["label_horizon_days"]) + int(project_vars["label_lateness_days"])


def knowledge_date_range(window_start: datetime, window_end: datetime) -> tuple[date, date]:
    """The inclusive knowledge dates of a partition time window (whose end is exclusive)."""
    return window_start.date(), (window_end - timedelta(days=1)).date()


def as_of_dates_for(model: str, min_date: date, max_date: date) -> list[date]:
    """The as-of dates a run over knowledge dates [min_date, max_date] rewrites in `model`."""
    delay = timedelta(days=label_delay_days() if model in LABELLED_MARTS else 0)
    days = (max_date - min_date).days + 1
    return [min_date - delay + timedelta(days=offset) for offset in range(days)]


def read_window_start(min_date: date) -> date:
    """The first arrival date a run over knowledge dates from `min_date` on reads."""
    return min_date - timedelta(days=int(dbt_project_vars()["recency_lookback_days"]) - 1)


# The run's own values (its knowledge dates and the signatures of what it reads) reach dbt in
# this environment variable (JSON), read by the `run_var` macro at execution only; `--vars`
# holds only what is the same for every run on a lake (its data root, DuckDB's threads). dbt
# throws its whole parse away when --vars change, so dates in --vars cost every run a full
# re-parse; with them here, dbt re-uses the last run's parse (dbt_project.reused_parse).
RUN_VALUES_ENV = "REFINERY_GOLD_RUN"


@dataclass(frozen=True)
class DbtBuild:
    """One `dbt build` of a run: its arguments, and the run's values for RUN_VALUES_ENV."""

    args: list[str]
    run_values: dict[str, Any]

    @property
    def vars_arg(self) -> str:
        return self.args[self.args.index("--vars") + 1]

    @property
    def env(self) -> dict[str, str]:
        return {RUN_VALUES_ENV: json.dumps(self.run_values, sort_keys=True)}


def dbt_build(min_date: date, max_date: date, data_dir: Path) -> DbtBuild:
    """`dbt build` of knowledge dates [min_date, max_date] on the lake at `data_dir`: the profile
    and the silver sources take the data root from the var, not from the environment; the
    signatures of the silver partitions it reads let dbt re-aggregate the ones that changed."""
    lake = LakePaths(Path(data_dir).resolve())
    lake_vars = {"data_dir": str(lake.root), "duckdb_threads": duckdb_threads()}
    run_values = {
        "min_date": min_date.isoformat(),
        "max_date": max_date.isoformat(),
        "arrival_signatures": arrival_signatures(lake, read_window_start(min_date), max_date),
    }
    return DbtBuild(["build", "--vars", vars_arg(lake_vars)], run_values)


def arrival_signatures(lake: LakePaths, first: date, last: date) -> dict[str, str]:
    """What each silver events partition of arrival dates [first, last] looks like on disk: a
    digest of its parts' names, sizes, modification times and inodes (lake.part_signature, the
    same record silver's event-id index keeps). dbt re-aggregates an arrival date
    whose signature differs from the one its aggregates were built from (int_arrival_ledger):
    a partition rewritten since (a backfill, a repaired day) is never read stale."""
    signatures = {}
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        parts = lake.partition_parts("silver", "events", day)
        if parts:
            text = json.dumps(part_signature(parts)).encode()
            signatures[day] = hashlib.sha256(text).hexdigest()[:32]
    return signatures
