"""bronze/events, bronze/users, bronze/products: one partition per arrival date, nothing lost.

A run over a range of dates (a backfill) is one run: the dates are ingested one after another,
each with its own materialization and check results (`run_partitions`)."""

from datetime import UTC, date, datetime, timedelta

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MetadataValue,
    asset,
)

from refinery.assets.bronze.ingest import (
    FILE_ERRORS,
    LandingError,
    bronze_event_parts,
    bronze_snapshot_from_file,
    landing_files,
    stamp,
    unsupported_file_record,
)
from refinery.assets.metadata import contract_check, counts_table, names_table, run_partitions
from refinery.contracts.bronze import BRONZE_CONTRACTS
from refinery.contracts.silver import parse_event_time
from refinery.faults import kill_point
from refinery.partitions import daily_partitions
from refinery.quality import consistency, freshness
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.lake import replace_dir_atomic, write_parquet_atomic

_DESCRIPTIONS = {
    "events": "Every line of `landing/events/{arrival date}/*.jsonl[.gz]`, as received: contract "
    "fields as text, the raw line, and why it did not parse; one row per file refinery does not "
    "read. One Parquet part per landing file (or 128 MB of it).",
    "users": "The CRM's users.csv snapshot of the arrival date, every value as text.",
    "products": "The catalogue's products.csv snapshot of the arrival date, every value as text.",
}


def build_bronze_asset(table: str):
    key = AssetKey(["bronze", table])
    contract = BRONZE_CONTRACTS[table]

    @asset(
        key=key,
        group_name="bronze",
        kinds={"polars", "parquet"},
        partitions_def=daily_partitions,
        description=_DESCRIPTIONS[table],
        metadata={"dagster/column_schema": contract.dagster_table_schema()},
        backfill_policy=BackfillPolicy.single_run(),
        check_specs=[
            AssetCheckSpec(
                "contract",
                asset=key,
                blocking=True,
                partitions_def=daily_partitions,
                description=f"Pandera {contract.name} contract on the written partition",
            ),
            AssetCheckSpec(
                "unparsed_lines",
                asset=key,
                blocking=False,
                partitions_def=daily_partitions,
                description="warns when lines could not be parsed (they go to quarantine)",
            ),
            AssetCheckSpec(
                "landing_files",
                asset=key,
                blocking=False,
                partitions_def=daily_partitions,
                description="warns when the landing folder holds files refinery did not "
                "read as exports (unsupported, misnamed, hidden, sub-folders), naming them",
            ),
        ],
    )
    def _bronze(context: AssetExecutionContext, lake: LakeResource, policy: QualityPolicy):
        yield from run_partitions(
            context,
            key,
            lambda partition: bronze_day(context, lake, policy, table, partition),
        )

    return _bronze


def bronze_day(
    context: AssetExecutionContext,
    lake: LakeResource,
    policy: QualityPolicy,
    table: str,
    partition: str,
) -> tuple[dict, list[AssetCheckResult]]:
    """Write and commit one bronze partition; its metadata and check results."""
    key = AssetKey(["bronze", table])
    contract = BRONZE_CONTRACTS[table]
    arrival = date.fromisoformat(partition)
    paths = lake.paths
    paths.sweep_staging()
    folder = landing_files(paths.landing_dir(table, partition), table)
    ingested_at = datetime.now(UTC)
    target = paths.partition_dir("bronze", table, partition)
    staging = paths.staging_dir("bronze", table, partition)
    rows_per_file: dict[str, int] = {}
    file_problems: dict[str, list[str]] = {}
    parts, checks = [], []

    def frames_of(path):
        source_file = str(path.relative_to(paths.root))
        if path in folder.unsupported:
            return source_file, iter([unsupported_file_record(table, path, source_file)])
        if table == "events":
            return source_file, bronze_event_parts(path, source_file)
        return source_file, iter([bronze_snapshot_from_file(path, source_file, table)])

    for path in [*folder.read, *folder.unsupported]:
        source_file, frames = frames_of(path)
        for frame in frames:
            frame = stamp(frame, table, arrival, ingested_at)
            write_parquet_atomic(frame, staging / f"part-{len(parts)}.parquet")
            kill_point("bronze.after_part")
            rows_per_file[source_file] = rows_per_file.get(source_file, 0) + frame.height
            problems = (
                frame.filter(pl.col("_parse_error").is_in(list(FILE_ERRORS)))
                .select("_parse_error", "_parse_detail")
                .unique(maintain_order=True)
            )
            for error, detail in problems.iter_rows():
                noted = file_problems.setdefault(source_file, [])
                if f"{error}: {detail}" not in noted:
                    noted.append(f"{error}: {detail}")
            # Measure and validate part by part: a 10M-line day never sits in memory whole.
            parts.append(_part_stats(frame, table, arrival))
            checks.append(
                contract_check(frame, contract, check_name="contract", asset_key=key, blocking=True)
            )
            del frame
    kill_point("bronze.before_swap")
    replace_dir_atomic(staging, target)
    skipped = [str(p.relative_to(paths.root)) for p in folder.skipped]
    if file_problems or skipped:
        context.log.warning(
            f"landing/{table}/{partition}: files not read as exports: "
            f"{file_problems}; skipped (hidden or sub-folders): {skipped}"
        )

    rows = sum(p["rows"] for p in parts)
    by_error = _sum_counts([p["parse_errors"] for p in parts])
    unparsed = sum(by_error.values())
    newest_times = [p["newest"] for p in parts if p["newest"] is not None]
    newest = max(newest_times, default=None) if table == "events" else ingested_at
    nulls = _sum_counts([p["nulls"] for p in parts])
    completeness = {c: 1.0 - (nulls.get(c, 0) / rows if rows else 0.0) for c in contract.required}
    metadata = {
        "dagster/row_count": rows,
        "dagster/column_schema": contract.dagster_table_schema(),
        "path": MetadataValue.path(str(target)),
        "quality/completeness": round(min(completeness.values(), default=1.0), 6),
        "quality/consistency": round(consistency(rows - unparsed, rows), 6),
        "quality/freshness": round(
            freshness(newest, half_life_hours=policy.freshness_half_life_hours), 6
        ),
        "newest_record_time": str(newest),
        "rows_per_file": counts_table(rows_per_file, "file"),
        "unparsed_lines": unparsed,
        "unparsed_by_error": counts_table(by_error, "parse_error"),
        "file_problems": names_table(file_problems, "file"),
        "skipped_entries": names_table(skipped),
    }
    failed = [c for c in checks if not c.passed]
    unparsed_check = AssetCheckResult(
        asset_key=key,
        check_name="unparsed_lines",
        passed=unparsed == 0,
        severity=AssetCheckSeverity.WARN,
        description=f"{unparsed} of {rows} lines did not parse: {by_error}"
        if unparsed
        else "every line parsed",
        metadata={"by_error": counts_table(by_error, "parse_error")},
    )
    return metadata, [
        failed[0] if failed else checks[0],
        unparsed_check,
        landing_files_check(key, file_problems, skipped),
    ]


def landing_files_check(
    key: AssetKey, file_problems: dict[str, list[str]], skipped: list[str]
) -> AssetCheckResult:
    """Warn, naming each one, about files that were not read as what their name says and entries
    that were not read at all (hidden files such as in-flight uploads, sub-folders)."""
    lines = [f"{name}: {'; '.join(problems)}" for name, problems in file_problems.items()]
    lines += [f"{name}: skipped (hidden file or sub-folder; not ingested)" for name in skipped]
    return AssetCheckResult(
        asset_key=key,
        check_name="landing_files",
        passed=not lines,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(lines)[:1000] if lines else "every file was read as an export",
        metadata={
            "file_problems": names_table(file_problems, "file"),
            "skipped_entries": names_table(skipped),
        },
    )


def _part_stats(frame: pl.DataFrame, table: str, arrival: date) -> dict:
    """Row count, nulls of required columns, parse errors and newest plausible event time."""
    required = BRONZE_CONTRACTS[table].required
    errors = frame.get_column("_parse_error").drop_nulls().value_counts()
    newest = None
    if table == "events":
        end_of_day = datetime.combine(arrival, datetime.min.time(), UTC) + timedelta(days=1)
        times = frame.select(parse_event_time(pl.col("event_time")).alias("t")).get_column("t")
        newest = times.filter(times < end_of_day).max()
    return {
        "rows": frame.height,
        "nulls": dict(zip(required, frame.select(pl.col(required).null_count()).row(0))),
        "parse_errors": dict(zip(errors[errors.columns[0]].to_list(), errors["count"].to_list())),
        "newest": newest,
    }


def _sum_counts(dicts: list[dict]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


bronze_assets = [build_bronze_asset(t) for t in ("events", "users", "products")]

__all__ = ["LandingError", "bronze_assets"]
