"""bronze/events, bronze/users, bronze/products: one partition per arrival date, nothing lost."""


import uuid
from datetime import date, datetime, timedelta, timezone

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from refinery.assets.bronze.ingest import (
    LandingError,
    bronze_event_parts,
    bronze_snapshot_from_file,
    landing_files,
    stamp,
)
from refinery.assets.metadata import contract_check
from refinery.contracts.bronze import BRONZE_CONTRACTS
from refinery.partitions import daily_partitions
from refinery.quality import consistency, freshness
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.lake import replace_dir_atomic, write_parquet_atomic

_DESCRIPTIONS = {
    "events": "Every line of landing/events/<arrival date>/*.jsonl[.gz], as received: contract "
    "fields as text, the raw line, and why it did not parse. One Parquet part per landing file.",
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
        check_specs=[
            AssetCheckSpec("contract", asset=key, blocking=True,
                           description=f"Pandera {contract.name} contract on the written partition"),
            AssetCheckSpec("unparsed_lines", asset=key, blocking=False,
                           description="warns when lines could not be parsed (they go to quarantine)"),
        ],
    )
    def _bronze(context: AssetExecutionContext, lake: LakeResource, policy: QualityPolicy):
        arrival = date.fromisoformat(context.partition_key)
        paths = lake.paths
        files, ignored = landing_files(paths.landing_dir(table, context.partition_key), table)
        ingested_at = datetime.now(timezone.utc)
        target = paths.partition_dir("bronze", table, context.partition_key)
        staging = target.with_name(f".staging-{uuid.uuid4().hex}")
        rows_per_file: dict[str, int] = {}
        parts, checks = [], []
        for path in files:
            source_file = str(path.relative_to(paths.root))
            if table == "events":
                frames = bronze_event_parts(path, source_file)
            else:
                frames = iter([bronze_snapshot_from_file(path, source_file, table)])
            for frame in frames:
                frame = stamp(frame, table, arrival, ingested_at)
                write_parquet_atomic(frame, staging / f"part-{len(parts)}.parquet")
                rows_per_file[source_file] = rows_per_file.get(source_file, 0) + frame.height
                # Measure and validate part by part: a 10M-line day never sits in memory whole.
                parts.append(_part_stats(frame, table, arrival))
                checks.append(
                    contract_check(
                        frame, contract, check_name="contract", asset_key=key, blocking=True
                    )
                )
                del frame
        replace_dir_atomic(staging, target)
        if ignored:
            context.log.warning(f"ignored files that are not {table} exports: {ignored}")

        rows = sum(p["rows"] for p in parts)
        by_error = _sum_counts([p["parse_errors"] for p in parts])
        unparsed = sum(by_error.values())
        newest_times = [p["newest"] for p in parts if p["newest"] is not None]
        newest = max(newest_times, default=None) if table == "events" else ingested_at
        nulls = _sum_counts([p["nulls"] for p in parts])
        completeness = {c: 1.0 - (nulls.get(c, 0) / rows if rows else 0.0) for c in contract.required}
        yield MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": contract.dagster_table_schema(),
                "path": MetadataValue.path(str(target)),
                "quality/completeness": round(min(completeness.values(), default=1.0), 6),
                "quality/consistency": round(consistency(rows - unparsed, rows), 6),
                "quality/freshness": round(
                    freshness(newest, half_life_hours=policy.freshness_half_life_hours), 6
                ),
                "newest_record_time": str(newest),
                "rows_per_file": MetadataValue.json(rows_per_file),
                "unparsed_lines": unparsed,
                "unparsed_by_error": MetadataValue.json(by_error),
                "ignored_files": MetadataValue.json([str(p) for p in ignored]),
            },
        )
        failed = [c for c in checks if not c.passed]
        yield failed[0] if failed else checks[0]
        yield AssetCheckResult(
            asset_key=key,
            check_name="unparsed_lines",
            passed=unparsed == 0,
            severity=AssetCheckSeverity.WARN,
            description=f"{unparsed} of {rows} lines did not parse: {by_error}"
            if unparsed
            else "every line parsed",
            metadata={"by_error": MetadataValue.json(by_error)},
        )

    return _bronze


def _part_stats(frame: pl.DataFrame, table: str, arrival: date) -> dict:
    """Row count, nulls of required columns, parse errors and newest plausible event time."""
    from refinery.assets.silver.transform import parse_event_time

    required = BRONZE_CONTRACTS[table].required
    errors = frame.get_column("_parse_error").drop_nulls().value_counts()
    newest = None
    if table == "events":
        end_of_day = datetime.combine(arrival, datetime.min.time(), timezone.utc) + timedelta(days=1)
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

__all__ = ["bronze_assets", "LandingError"]
