"""The gold layer's wiring: the dbt-duckdb project as partitioned Dagster assets, then Parquet marts.

The partition key is the knowledge (arrival) date. One run covers a range of them (a backfill is
one run: BackfillPolicy.single_run, so `dagster asset materialize --partition-range` works) and
one `dbt build`, which turns the range into the as-of dates it rebuilds.

What the wiring calls, one module each:
- `dbt_project`: the DbtProject, its prepared manifest, the translator, DuckDB settings, pruning;
- `plan`: the dates a run covers, reads and rewrites, and its `dbt build` arguments;
- `gate`: the silver partitions it reads and whether a blocking check failed on one;
- `export`: the marts' as-of dates to Parquet; `checks`: the Pandera checks on what was written.
Here: the `@dbt_assets` function, its run config, and the metadata of what it published.
"""

from collections.abc import Sequence
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
    MetadataValue,
    Output,
)
from dagster_dbt import DbtCliResource, dbt_assets

from refinery.assets.gold.dbt_project import (
    dbt_project,
    gold_translator,
    invocation_target,
    load_manifest,
    memory_limit_gb,
    prune_dbt_targets,
    reused_parse,
    targets_kept,
)
from refinery.assets.gold.export import export_marts, mart_file
from refinery.assets.gold.gate import check_silver_gate
from refinery.assets.gold.plan import (
    LABELLED_MARTS,
    MARTS,
    as_of_dates_for,
    dbt_build,
    knowledge_date_range,
    label_delay_days,
)
from refinery.assets.metadata import quality_measures
from refinery.contracts.gold import gold_contract
from refinery.dbt_in_process import environment
from refinery.faults import kill_point
from refinery.partitions import daily_partitions
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths

WAREHOUSE_POOL = "duckdb_warehouse"


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
    keep = targets_kept()
    held_back: list[Any] = []

    build = dbt_build(min_date, max_date, paths.root)
    args = list(build.args)
    if config.full_refresh:
        args.append("--full-refresh")
        context.log.info(f"full refresh: dbt rebuilds and gold publishes {export_from}..{max_date}")
    target = invocation_target(Path(dbt.project_dir), context)
    # the run's values stay in the environment while dbt runs: dbt runs in this process
    # (refinery/dbt_in_process.py) and reads them as it executes the models
    with reused_parse(Path(dbt.project_dir), target, build.vars_arg), environment(build.env):
        invocation = dbt.cli(args, context=context, target_path=target)
        try:
            # upstream results are reported as dbt emits them (Dagster stores them while the
            # build goes on, not after it); the marts' wait for the export
            for event in invocation.stream():
                if _event_asset_key(context, event) in mart_keys:
                    held_back.append(event)
                else:
                    yield event
        finally:
            prune_dbt_targets(Path(invocation.target_path), keep)

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
