"""Metadata every materialization records: row counts, quality measures, schema, location."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
)
from pandera.errors import SchemaError, SchemaErrors

from refinery.contracts.rules import Contract
from refinery.faults import kill_point
from refinery.quality import DEFAULT_HALF_LIFE_HOURS, completeness, consistency, freshness


def quality_measures(
    frame: pl.DataFrame,
    required: list[str],
    *,
    passing_rows: int,
    evaluated_rows: int,
    newest: datetime | None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
) -> dict:
    """The quality measures of DESIGN.md as materialization metadata (silver and gold)."""
    complete = completeness(frame, required)
    return {
        "quality/completeness": round(complete.pop("table"), 6),
        "quality/completeness_by_column": counts_table(
            {k: round(v, 6) for k, v in complete.items()}, "column", "completeness"
        ),
        "quality/consistency": round(consistency(passing_rows, evaluated_rows), 6),
        "quality/freshness": round(freshness(newest, half_life_hours=half_life_hours), 6),
        "newest_record_time": str(newest) if newest is not None else "none",
    }


def quality_metadata(
    frame: pl.DataFrame | pl.LazyFrame,
    contract: Contract,
    *,
    passing_rows: int,
    evaluated_rows: int,
    newest: datetime | None,
    half_life_hours: float,
    path: Path,
) -> dict:
    """`frame` may be a scan of the written parts: only counts are computed from it."""
    rows = (
        frame.height if isinstance(frame, pl.DataFrame) else frame.select(pl.len()).collect().item()
    )
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": contract.dagster_table_schema(),
        "path": MetadataValue.path(str(path)),
        **quality_measures(
            frame,
            contract.required,
            passing_rows=passing_rows,
            evaluated_rows=evaluated_rows,
            newest=newest,
            half_life_hours=half_life_hours,
        ),
    }


def contract_check(
    data: pl.DataFrame | Sequence[Path],
    contract: Contract,
    *,
    check_name: str,
    asset_key,
    blocking: bool,
) -> AssetCheckResult:
    """Validate what was written with the contract's Pandera schema.

    `data` is a frame, or the Parquet parts of a partition: those are validated one at a time
    (a 10M-row day never sits in memory whole) and the contract's unique key across them.
    """
    if isinstance(data, pl.DataFrame):
        failure, rows = _contract_failure(data, contract), data.height
    else:
        failure, rows = None, 0
        for part in data:
            frame = pl.read_parquet(part)
            rows += frame.height
            failure = _contract_failure(frame, contract)
            del frame
            if failure:
                failure = f"in {Path(part).name}: {failure}"
                break
        if failure is None and contract.unique and len(data) > 1:
            failure = _duplicate_keys_across(list(data), list(contract.unique))
    if failure:
        return AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=False,
            severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
            description=f"{contract.name} contract broken: {failure[:500]}",
            metadata={"failures": MetadataValue.md(failure)},
        )
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=True,
        metadata={"rows_validated": rows, "contract": contract.name},
    )


def _contract_failure(frame: pl.DataFrame, contract: Contract) -> str | None:
    try:
        contract.pandera_schema().validate(frame, lazy=True)
    except (SchemaErrors, SchemaError) as err:
        cases = getattr(err, "failure_cases", None)
        return _failure_summary(cases) if cases is not None else str(err)[:2000]
    return None


def _duplicate_keys_across(parts: list[Path], key: list[str]) -> str | None:
    """Each part is unique on `key` by its own validation; a key in two parts is caught here."""
    repeated = (
        pl.scan_parquet(parts)
        .group_by(key)
        .len()
        .filter(pl.col("len") > 1)
        .select(pl.len().alias("keys"), pl.struct(key).first().alias("example"))
        .collect()
    )
    keys, example = repeated.row(0)
    if not keys:
        return None
    return f"{keys} {'/'.join(key)} value(s) appear in more than one part, e.g. {example}"


def _failure_summary(cases) -> str:
    frame = cases if isinstance(cases, pl.DataFrame) else pl.from_pandas(cases)
    cols = [c for c in ("schema_context", "column", "check", "failure_case") if c in frame.columns]
    grouped = (
        frame.select([pl.col(c).cast(pl.String) for c in cols])
        .group_by(cols[:-1] or cols)
        .agg(pl.len().alias("failures"), pl.col(cols[-1]).first().alias("example"))
    )
    lines = ["| " + " | ".join([*cols[:-1], "failures", "example"]) + " |"]
    lines.append("|" + "---|" * (len(cols) + 1))
    for row in grouped.sort("failures", descending=True).iter_rows():
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def counts_table(counts: dict, key: str, count: str = "rows") -> MetadataValue:
    """A {name: number} breakdown as a metadata table (the UI sorts and renders it), not JSON."""
    kind = "float" if any(isinstance(v, float) for v in counts.values()) else "int"
    return MetadataValue.table(
        records=[TableRecord({key: str(k), count: v}) for k, v in counts.items()],
        schema=TableSchema(columns=[TableColumn(key, "string"), TableColumn(count, kind)]),
    )


def names_table(names: dict[str, list[str]] | list[str], key: str = "entry") -> MetadataValue:
    """Files and what was wrong with each, one row per (file, problem), as a metadata table."""
    rows = (
        [(name, problem) for name, problems in names.items() for problem in problems]
        if isinstance(names, dict)
        else [(name, "skipped") for name in names]
    )
    return MetadataValue.table(
        records=[TableRecord({key: n, "problem": p}) for n, p in rows],
        schema=TableSchema(columns=[TableColumn(key, "string"), TableColumn("problem", "string")]),
    )


def blocking_failure(result: AssetCheckResult, blocking: bool) -> bool:
    return blocking and not result.passed and result.severity == AssetCheckSeverity.ERROR


def run_partitions(
    context,
    key: AssetKey,
    process_day: Callable[[str], tuple[dict, list[AssetCheckResult]]],
) -> Iterator:
    """Materialize every partition of the run, one date at a time in date order.

    `process_day(partition)` writes and commits one partition and returns its metadata and its
    check results. Each partition gets its own check evaluations (partitioned checks:
    `AssetCheckEvaluation(partition=...)`) as soon as it is committed, and its own
    materialization with its own metadata (`add_asset_metadata(partition_key=...)` + one final
    output, which Dagster turns into one materialization per partition of the run). A blocking
    check that fails on a date stops the run there: the dates processed so far (the failed one
    included, since its files were written) are materialized explicitly, and the step fails
    before the next date is read, so its downstream steps do not run.
    """
    blocking_checks = {spec.name for spec in context.assets_def.check_specs if spec.blocking}
    done: list[tuple[str, dict]] = []
    for partition in sorted(context.partition_keys):
        metadata, checks = process_day(partition)
        done.append((partition, metadata))
        context.add_asset_metadata(metadata, partition_key=partition)
        failed = []
        for result in checks:
            blocking = result.check_name in blocking_checks
            if blocking_failure(result, blocking):
                failed.append(result.check_name)
            yield AssetCheckEvaluation(
                asset_key=key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
                blocking=blocking,
                partition=partition,
            )
        if failed:
            for day, day_metadata in done:
                yield AssetMaterialization(asset_key=key, partition=day, metadata=day_metadata)
            later = [p for p in sorted(context.partition_keys) if p > partition]
            raise Failure(
                description=f"{key.to_user_string()} {partition}: blocking check(s) "
                f"{', '.join(failed)} failed"
                + (
                    f"; not processed: {later[0]}…{later[-1]} ({len(later)} dates)" if later else ""
                ),
                metadata={"failed_partition": partition, "failed_checks": ", ".join(failed)},
            )
        kill_point(f"{key.path[0]}.after_day")
    yield MaterializeResult(asset_key=key)  # no value: nothing goes to an IO manager
    # The checks' own outputs (what a later step of the run may wait on): their evaluations,
    # one per partition, were reported above.
    assets_def = context.assets_def
    for check_key in context.selected_asset_check_keys:
        yield Output(None, output_name=assets_def.get_output_name_for_asset_check_key(check_key))
