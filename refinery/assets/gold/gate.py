"""Gold reads no silver partition whose latest blocking check failed.

Silver's checks (row accounting, contract, quarantine rate) run in the step that writes the
partition, so a failed one leaves the partition's files on disk: a gold run over a later range
would read them. Before dbt runs, gold asks the Dagster instance, per silver partition it reads,
for the checks of that partition's latest materialization and fails, naming each partition and
check, if a blocking one failed. Silver's checks are partitioned: an evaluation names its partition,
and it belongs to the partition's latest materialization when it comes from the same run (a
backfill run materializes many partitions, each with its own evaluations). Re-running the partition (fixed files, or a
raised limit) makes a new materialization whose checks pass, and gold reads it again.

A partition never materialized through Dagster (files written by hand) has no checks to consult
and is read as it is.

`silver_reads` says which partitions a run reads, `blocked_partitions` which of them are blocked,
and `check_silver_gate` (what the gold asset calls) fails the run naming them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    Failure,
    MetadataValue,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from refinery.assets.gold.dbt_project import dbt_project_vars
from refinery.assets.silver.assets import silver_assets
from refinery.resources.lake import LakePaths

SNAPSHOT_TABLES = ("users", "products")
_HISTORY_PAGE = 500


def event_partitions_read(min_date: date, max_date: date, lookback_days: int) -> list[str]:
    """Arrival dates of silver/events a run over knowledge dates [min_date, max_date] reads: the
    feature window and the recency look-back (the longer one) before the first date, up to the
    last (labels read purchases that arrived up to the knowledge date, inside that range)."""
    first = min_date - timedelta(days=lookback_days - 1)
    return [(first + timedelta(days=i)).isoformat() for i in range((max_date - first).days + 1)]


def snapshot_partitions_read(min_date: date, max_date: date, existing: Iterable[str]) -> list[str]:
    """Snapshot partitions (users, products) whose rows reach the marts of [min_date, max_date].

    The SCD2 history makes the attributes valid on D those of the newest snapshot on or before D
    (a key missing from it is null), so the run reads the newest snapshot on or before min_date
    and every snapshot after it up to max_date; older snapshots only move version boundaries.
    """
    keys = sorted(key for key in existing if key <= max_date.isoformat())
    start = min_date.isoformat()
    before = [key for key in keys if key <= start]
    return before[-1:] + [key for key in keys if key > start]


@dataclass(frozen=True)
class BlockedPartition:
    asset_key: AssetKey
    partition: str
    check_name: str
    run_id: str
    reason: str

    def describe(self) -> str:
        return (
            f"{self.asset_key.to_user_string()} partition {self.partition}: blocking check "
            f"{self.check_name} {self.reason} (run {self.run_id})"
        )


def latest_materialization_runs(
    instance: DagsterInstance, asset_key: AssetKey, partitions: Sequence[str]
) -> dict[str, str]:
    """partition -> run id of its latest materialization (partitions never materialized: absent)."""
    if not partitions:
        return {}
    storage_ids = instance.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions)
    )
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, storage_ids=list(storage_ids.values())),
        limit=len(storage_ids),
    ).records
    return {record.partition_key: record.run_id for record in records if record.partition_key}


def check_records_of_runs(
    instance: DagsterInstance, check_key: AssetCheckKey, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], object]:
    """The latest execution record of `check_key` for each (run id, partition) of `wanted`
    (newest first, paged). A partitioned record counts for its own partition only; an
    unpartitioned one (a run's planned event, or history from before the checks were
    partitioned) for every partition of its run that has no record of its own."""
    runs = {run_id for run_id, _ in wanted}
    own: dict[tuple[str, str], object] = {}
    run_wide: dict[str, object] = {}
    cursor = None
    storage = instance.event_log_storage
    while len(own) < len(wanted):
        page = storage.get_asset_check_execution_history(
            check_key, limit=_HISTORY_PAGE, cursor=cursor
        )
        for record in page:
            if record.run_id not in runs:
                continue
            if record.partition is None:
                run_wide.setdefault(record.run_id, record)
            elif (record.run_id, record.partition) in wanted:
                own.setdefault((record.run_id, record.partition), record)
        if len(page) < _HISTORY_PAGE:
            break
        cursor = page[-1].id
    found = {k: run_wide[k[0]] for k in wanted if k[0] in run_wide}
    return found | own


def blocked_partitions(
    instance: DagsterInstance,
    reads: Mapping[AssetKey, Sequence[str]],
    blocking_checks: Mapping[AssetKey, Sequence[str]],
    current_run_id: str | None = None,
) -> list[BlockedPartition]:
    """The partitions of `reads` whose latest materialization has a failed blocking check, or a
    blocking check that was planned and never evaluated (its run died before it ran)."""
    blocked = []
    for asset_key, partitions in reads.items():
        runs = latest_materialization_runs(instance, asset_key, partitions)
        if not runs:
            continue
        wanted = {(run_id, partition) for partition, run_id in runs.items()}
        for check_name in blocking_checks.get(asset_key, ()):
            records = check_records_of_runs(instance, AssetCheckKey(asset_key, check_name), wanted)
            for (run_id, partition), record in records.items():
                reason = _blocking_reason(record, current_run_id)
                if reason is not None:
                    blocked.append(
                        BlockedPartition(asset_key, partition, check_name, run_id, reason)
                    )
    return sorted(blocked, key=lambda b: (b.asset_key.to_user_string(), b.partition, b.check_name))


def _blocking_reason(record, current_run_id: str | None) -> str | None:
    if record.status == AssetCheckExecutionRecordStatus.FAILED:
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        if evaluation.blocking is False:
            return None
        return f"failed: {evaluation.description or 'no description'}"
    if record.status == AssetCheckExecutionRecordStatus.PLANNED and record.run_id != current_run_id:
        return "was never evaluated (its run ended before the check ran)"
    return None


def blocked_message(blocked: Sequence[BlockedPartition]) -> str:
    lines = "\n".join(f"- {b.describe()}" for b in blocked)
    return (
        f"gold reads {len(blocked)} silver partition(s) whose latest blocking check did not pass; "
        f"nothing was built:\n{lines}\n"
        "Fix the partition (re-deliver its landing files, or raise the limit), re-materialize it "
        "(bronze and silver for that date), then re-run gold."
    )


def silver_reads(
    paths: LakePaths, instance: Any, min_date: date, max_date: date
) -> dict[AssetKey, list[str]]:
    """The silver partitions a run over knowledge dates [min_date, max_date] reads, per asset."""
    project_vars = dbt_project_vars()
    lookback = max(
        int(project_vars["feature_window_days"]), int(project_vars["recency_lookback_days"])
    )
    reads = {AssetKey(["silver", "events"]): event_partitions_read(min_date, max_date, lookback)}
    for table in SNAPSHOT_TABLES:
        key = AssetKey(["silver", table])
        known = set(instance.get_materialized_partitions(key)) | set(
            paths.existing_partitions("silver", table)
        )
        reads[key] = snapshot_partitions_read(min_date, max_date, known)
    return reads


def silver_blocking_checks() -> dict[AssetKey, list[str]]:
    """The blocking checks of the silver assets, as silver defines them."""
    checks: dict[AssetKey, list[str]] = {}
    for assets_def in silver_assets:
        for spec in assets_def.check_specs:
            if spec.blocking:
                checks.setdefault(spec.asset_key, []).append(spec.name)
    return checks


def check_silver_gate(
    context: AssetExecutionContext, paths: LakePaths, min_date: date, max_date: date
) -> None:
    """Fail the run, naming partitions and checks, if it would read a silver partition whose
    latest blocking check did not pass."""
    reads = silver_reads(paths, context.instance, min_date, max_date)
    blocked = blocked_partitions(
        context.instance, reads, silver_blocking_checks(), current_run_id=context.run.run_id
    )
    if blocked:
        message = blocked_message(blocked)
        context.log.error(message)
        raise Failure(
            description=message,
            metadata={
                "blocked_partitions": MetadataValue.json(
                    [
                        {
                            "asset": b.asset_key.to_user_string(),
                            "partition": b.partition,
                            "check": b.check_name,
                            "run_id": b.run_id,
                        }
                        for b in blocked
                    ]
                )
            },
        )
    context.log.info(
        "gate: no blocking silver check failed in "
        + ", ".join(
            f"{key.to_user_string()} ({len(parts)} partitions)" for key, parts in reads.items()
        )
    )
