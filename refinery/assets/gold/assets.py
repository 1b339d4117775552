"""The gold layer: the dbt-duckdb project as partitioned Dagster assets, then Parquet marts.

The partition key is the knowledge (arrival) date. One run covers a range of them (a backfill is
one run: BackfillPolicy.single_run, so `dagster asset materialize --partition-range` works) and
one `dbt build`, which turns the range into the as-of dates it rebuilds.
"""

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from refinery.assets.gold.dbt_project import (
    dbt_project,
    dbt_project_vars,
    load_manifest,
    vars_arg,
)
from refinery.assets.gold.export import export_marts, mart_file
from refinery.assets.gold.gate import (
    SNAPSHOT_TABLES,
    blocked_message,
    blocked_partitions,
    event_partitions_read,
    snapshot_partitions_read,
)
from refinery.assets.metadata import quality_measures
from refinery.assets.silver.assets import silver_assets
from refinery.contracts.gold import gold_contract
from refinery.faults import kill_point
from refinery.partitions import daily_partitions
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths, env_int, part_signature

FEATURE_MART = "user_daily_features"
LABELLED_MARTS = ("labels", "training_examples")
MARTS = (FEATURE_MART, *LABELLED_MARTS)
WAREHOUSE_POOL = "duckdb_warehouse"

# dagster-dbt gives every invocation its own target/<op>-<run>-<uuid>/ (~3 MB of compiled SQL,
# run_results.json, the partial manifest); kept forever they grow without bound on a platform
# whose sensors run a build a day and whose backfills run several.
DEFAULT_DBT_TARGETS_KEPT = 10


def prune_dbt_targets(latest: Path, keep: int) -> list[Path]:
    """Delete the invocation target dirs beside `latest` (same op, any run), all but the `keep`
    newest by modification time; `latest` itself always stays. Returns what was deleted.

    Another run's build in progress is among the newest, so it stays unless more than `keep`
    builds run at once (the warehouse pool lets one run).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the latest invocation's target stays), got {keep}")
    op_name = latest.name.rsplit("-", 2)[0]  # op names cannot contain "-"
    siblings = [
        path for path in latest.parent.glob(f"{op_name}-*-*") if path.is_dir() and path != latest
    ]
    siblings.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    removed = siblings[keep - 1 :]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def label_delay_days() -> int:
    """A label for as-of D is final, and written, in the run of knowledge date D + this."""
    project_vars = dbt_project_vars()
    return int(project_vars["label_horizon_days"]) + int(project_vars["label_lateness_days"])


def knowledge_date_range(window_start: datetime, window_end: datetime) -> tuple[date, date]:
    """The inclusive knowledge dates of a partition time window (whose end is exclusive)."""
    return window_start.date(), (window_end - timedelta(days=1)).date()


def duckdb_threads() -> int:
    """DuckDB's worker threads in dbt (REFINERY_DUCKDB_THREADS, default: the machine's cores).
    The marts do not depend on it (money is summed exactly); it only trades speed for cores."""
    return env_int("REFINERY_DUCKDB_THREADS", os.cpu_count() or 1, minimum=1)


def read_window_start(min_date: date) -> date:
    """The first arrival date a run over knowledge dates from `min_date` on reads."""
    return min_date - timedelta(days=int(dbt_project_vars()["recency_lookback_days"]) - 1)


def dbt_build_args(min_date: date, max_date: date, data_dir: Path) -> list[str]:
    """`dbt build` of knowledge dates [min_date, max_date] on the lake at `data_dir`: the profile
    and the silver sources take the data root from the var, not from the environment; the
    signatures of the silver partitions it reads let dbt re-aggregate the ones that changed."""
    lake = LakePaths(Path(data_dir).resolve())
    dbt_vars = {
        "min_date": min_date.isoformat(),
        "max_date": max_date.isoformat(),
        "data_dir": str(Path(data_dir).resolve()),
        "duckdb_threads": duckdb_threads(),
        "arrival_signatures": arrival_signatures(lake, read_window_start(min_date), max_date),
    }
    return ["build", "--vars", vars_arg(dbt_vars)]


def as_of_dates_for(model: str, min_date: date, max_date: date) -> list[date]:
    """The as-of dates a run over knowledge dates [min_date, max_date] rewrites in `model`."""
    delay = timedelta(days=label_delay_days() if model in LABELLED_MARTS else 0)
    days = (max_date - min_date).days + 1
    return [min_date - delay + timedelta(days=offset) for offset in range(days)]


class GoldTranslator(DagsterDbtTranslator):
    """Models become gold/<model>; the silver sources are the silver assets the lead defines."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey(["silver", dbt_resource_props["name"]])
        return AssetKey(["gold", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "gold"

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        """dbt's tests as checks, each described in words (a test's `meta.description` wins):
        what it asserts, on which columns, and on which rows (its `where`)."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        test = manifest["nodes"].get(unique_id, {})
        return spec._replace(description=describe_dbt_test(test))


_TEST_WORDS = {
    "not_null": "no null {columns}",
    "unique": "{columns} unique",
    "unique_combination_of_columns": "one row per ({columns})",
    "accepted_values": "{columns} only one of {values}",
    "accepted_range": "{columns} within [{min_value}, {max_value}]",
    "relationships": "every {columns} exists in {to}",
}


def describe_dbt_test(test: Mapping[str, Any]) -> str:
    """A sentence for a dbt generic test from its manifest node."""
    metadata = test.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    columns = kwargs.get("combination_of_columns") or [test.get("column_name") or ""]
    words = {
        "columns": ", ".join(c for c in columns if c) or "the rows",
        "values": ", ".join(str(v) for v in kwargs.get("values") or []),
        "min_value": kwargs.get("min_value", "-inf"),
        "max_value": kwargs.get("max_value", "inf"),
        "to": str(kwargs.get("to", "")).replace("ref(", "").strip("()'\" "),
    }
    name = metadata.get("name") or test.get("name", "test")
    sentence = _TEST_WORDS.get(name, name.replace("_", " ") + " on {columns}").format(**words)
    where = (test.get("config") or {}).get("where")
    rows = " (rows of the run's dates)" if where else ""
    severity = (test.get("config") or {}).get("severity", "error").lower()
    blocks = "; blocks the marts when it fails" if severity == "error" else ""
    return f"dbt test: {sentence}{rows}{blocks}."


gold_translator = GoldTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


# dbt's DuckDB memory cap unless REFINERY_DUCKDB_MEMORY_LIMIT says otherwise; profiles.yml has the
# same default (a test keeps them equal). The marts are built from per-(user, day) aggregates
# (dbt_project/models/intermediate), never from events x as-of dates, so one build covers any run.
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"
_MEMORY_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
_MEMORY_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_limit_gb(raw: str | None = None) -> float:
    """DuckDB's memory_limit of the dbt profile (REFINERY_DUCKDB_MEMORY_LIMIT, default 3GB)."""
    if raw is None:
        raw = os.environ.get("REFINERY_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*", raw)
    if not match or match.group(2).lower() not in _MEMORY_UNITS:
        raise ValueError(
            f"REFINERY_DUCKDB_MEMORY_LIMIT={raw!r}: use a size DuckDB reads, e.g. 6GB or 8GiB"
        )
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()] / 1e9


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


class GoldRunConfig(Config):
    """Run config of the gold step. full_refresh: rebuild every table from all of silver
    (`dbt build --full-refresh`) and publish every as-of date from the first arrival on; what
    adding a feature column needs (docs/GOLD.md):
    --config-json '{"ops": {"gold_dbt_models": {"config": {"full_refresh": true}}}}'."""

    full_refresh: bool = False


@dbt_assets(
    manifest=load_manifest(),
    project=dbt_project(),
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    dagster_dbt_translator=gold_translator,
)
def gold_dbt_models(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    lake: LakeResource,
    config: GoldRunConfig,
):
    """One `dbt build` over the run's knowledge dates (a backfill of any length is one build:
    the marts come from per-(user, day) aggregates, whose size does not multiply by the dates),
    then the marts' as-of dates go to Parquet.

    First the gate: if a silver partition the run reads has a failed blocking check (gate.py),
    the run fails naming it, before dbt reads anything.

    Mart outputs (and their tests) wait for the export, so their materializations carry the row
    counts and file paths of what was published. If the build fails (a blocking dbt test, an
    error), the results upstream of the marts are reported and the run fails before anything is
    exported.
    """
    min_date, max_date = knowledge_date_range(*context.partition_time_window)
    paths = lake.paths
    export_from = min_date
    if config.full_refresh:
        # dbt rebuilds every as-of date from the first silver arrival; all of them are published
        arrivals = paths.existing_partitions("silver", "events")
        if arrivals:
            export_from = min(min_date, date.fromisoformat(arrivals[0]))
    memory_limit_gb()  # a malformed REFINERY_DUCKDB_MEMORY_LIMIT fails here, by name
    check_silver_gate(context, paths, min_date, max_date)
    mart_keys = {AssetKey(["gold", model]): model for model in MARTS}
    selected_marts = [mart_keys[key] for key in context.selected_asset_keys if key in mart_keys]
    targets_kept = env_int("REFINERY_DBT_TARGETS_KEPT", DEFAULT_DBT_TARGETS_KEPT, minimum=1)
    upstream: list[Any] = []
    held_back: list[Any] = []

    args = dbt_build_args(min_date, max_date, paths.root)
    if config.full_refresh:
        args.append("--full-refresh")
        context.log.info(f"full refresh: dbt rebuilds and gold publishes {export_from}..{max_date}")
    invocation = dbt.cli(args, context=context)
    try:
        for event in invocation.stream():
            if _event_asset_key(context, event) in mart_keys:
                held_back.append(event)
            else:
                upstream.append(event)
    except Exception:
        yield from upstream  # what is upstream of the marts is reported; no mart is exported
        raise
    finally:
        prune_dbt_targets(Path(invocation.target_path), targets_kept)

    yield from upstream
    kill_point("gold.before_export")
    mart_metadata = {
        model: export_mart_metadata(paths, model, export_from, max_date)
        for model in sorted(selected_marts)
    }
    partitions = sorted(context.partition_keys)
    if len(partitions) > 1:
        # a backfill: each partition's materialization carries its own as-of date's rows, not
        # the whole run's (the run's total stays, as rows_in_run)
        for model in selected_marts:
            metadata = mart_metadata[model]
            metadata["rows_in_run"] = metadata.pop("dagster/row_count")
            for partition, figures in partition_rows(paths, model, partitions).items():
                context.add_asset_metadata(
                    figures, asset_key=AssetKey(["gold", model]), partition_key=partition
                )
    # outputs before the checks that check them
    held_back.sort(key=lambda event: not isinstance(event, Output))
    for event in held_back:
        if isinstance(event, Output):
            model = mart_keys[_event_asset_key(context, event)]
            event = event.with_metadata({**event.metadata, **mart_metadata[model]})
        yield event


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


def partition_rows(lake: LakePaths, model: str, partitions: Sequence[str]) -> dict[str, dict]:
    """Per gold partition (knowledge date) of a run: the as-of date it wrote in `model`, that
    file's rows (from its Parquet footer) and path; 0 rows when the day had none."""
    gold_dir = lake.lake / "gold"
    delay = timedelta(days=label_delay_days() if model in LABELLED_MARTS else 0)
    figures = {}
    for partition in partitions:
        as_of = date.fromisoformat(partition) - delay
        path = mart_file(gold_dir, model, as_of)
        rows = pq.read_metadata(path).num_rows if path.exists() else 0
        figures[partition] = {
            "dagster/row_count": rows,
            "as_of_date": as_of.isoformat(),
            "gold_file": MetadataValue.path(str(path)) if path.exists() else "none: no rows",
        }
    return figures


def export_mart_metadata(
    lake: LakePaths, model: str, min_date: date, max_date: date
) -> dict[str, Any]:
    as_of_dates = as_of_dates_for(model, min_date, max_date)
    gold_dir = lake.lake / "gold"
    rows = export_marts(lake.warehouse, gold_dir, [model], as_of_dates)[model]
    written = [mart_file(gold_dir, model, day) for day in as_of_dates]
    return {
        **mart_quality_metadata(model, [path for path in written if path.exists()]),
        "dagster/row_count": rows,
        "as_of_dates": f"{as_of_dates[0].isoformat()}..{as_of_dates[-1].isoformat()}",
        "knowledge_dates": f"{min_date.isoformat()}..{max_date.isoformat()}",
        "gold_files": MetadataValue.json([str(path) for path in written if path.exists()]),
        "gold_dir": MetadataValue.path(str(gold_dir / model)),
    }


def mart_quality_metadata(model: str, files: list[Path]) -> dict[str, Any]:
    """Completeness, consistency (rows passing the gold contract) and freshness of what was
    published; freshness counts from the end of the newest as-of date."""
    if not files:
        return {}
    frame = pl.read_parquet(files)
    contract = gold_contract(model)
    passing = frame.select(contract.all_ok().sum()).item() if frame.height else 0
    newest = frame.get_column("as_of_date").max()
    newest_end = (
        datetime.combine(newest + timedelta(days=1), datetime.min.time(), UTC)
        if newest is not None
        else None
    )
    return quality_measures(
        frame,
        contract.required,
        passing_rows=int(passing),
        evaluated_rows=frame.height,
        newest=newest_end,
    )


def _event_asset_key(context: AssetExecutionContext, event: Any) -> AssetKey | None:
    if isinstance(event, Output):
        return context.asset_key_for_output(event.output_name)
    if isinstance(event, AssetCheckResult):
        return event.asset_key
    return None


gold_assets: Sequence = [gold_dbt_models]
