"""silver/events, silver/users, silver/products: typed, clean, deduplicated, contract-validated.

Silver partitions are lake/silver/<table>/date=<A>/part-<i>.parquet (events: one part per bronze
part). Rejected rows land in lake/quarantine/<table>/date=<A>/part-0.parquet with their reason;
dropped duplicates in duplicates.parquet beside them. Three blocking checks stop the line:
the accounting invariant, the contract, and the quarantine rate.
"""


import json
import uuid
from datetime import date, timedelta
from pathlib import Path

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

from refinery.assets.metadata import contract_check, quality_metadata
from refinery.assets.silver.transform import (
    SilverResult,
    by_reason,
    clean_snapshot,
    keep_first_arrivals,
    split_events,
)
from refinery.contracts.silver import CONTRACTS
from refinery.partitions import daily_partitions
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.lake import LakePaths, replace_dir_atomic, write_parquet_atomic

_DESCRIPTIONS = {
    "events": "Valid events of one arrival date: typed, UTC, lower-cased, deduplicated by event_id "
    "(within the day and against the look-back window of earlier days).",
    "users": "The CRM snapshot of one arrival date, typed and validated; one row per user.",
    "products": "The catalogue snapshot of one arrival date, typed and validated; one row per product.",
}


def prior_event_ids(paths: LakePaths, arrival: date, lookback_days: int) -> pl.Series:
    """event_ids already in silver in the `lookback_days` partitions before `arrival`."""
    files = []
    for back in range(1, lookback_days + 1):
        files += paths.partition_parts("silver", "events", (arrival - timedelta(days=back)).isoformat())
    if not files:
        return pl.Series("event_id", [], dtype=pl.String)
    return pl.scan_parquet(files).select("event_id").collect().get_column("event_id")


def write_silver_events(bronze_parts: list[Path], prior: pl.Series, staging: Path) -> SilverResult:
    """Silver events of one day written as `staging/part-<i>.parquet`, one per bronze part.

    Typing and validation go part by part, so memory follows the part size (128 MB of landing
    text), not the day. Deduplication needs the whole day: it runs once over the event_id column
    of the written parts (in arrival order) and the look-back ids, then rewrites the parts that
    held a duplicate. Returns the day's quarantine and duplicates; `silver` is left empty.
    """
    parts, quarantined, bronze_rows = [], [], 0
    for i, bronze_part in enumerate(bronze_parts):
        split = split_events(pl.scan_parquet(bronze_part))
        part = staging / f"part-{i}.parquet"
        write_parquet_atomic(split.silver, part)
        parts.append((part, split.silver.height))
        quarantined.append(split.quarantine)
        bronze_rows += split.bronze_rows
        del split
    ids = pl.scan_parquet([p for p, _ in parts]).select("event_id").collect().get_column("event_id")
    keep = keep_first_arrivals(ids, prior)
    del ids
    duplicates, offset = [], 0
    for part, rows in parts:
        part_keep = keep.slice(offset, rows)
        offset += rows
        if not part_keep.all():
            frame = pl.read_parquet(part)
            duplicates.append(frame.filter(~part_keep))
            write_parquet_atomic(frame.filter(part_keep), part)
            del frame
    quarantine = pl.concat(quarantined)
    silver_empty = pl.read_parquet(parts[0][0], n_rows=0)
    return SilverResult(
        silver=silver_empty,
        quarantine=quarantine,
        duplicates=pl.concat(duplicates) if duplicates else silver_empty,
        bronze_rows=bronze_rows,
        quarantine_by_reason=by_reason(quarantine),
    )


def quarantine_rate_check(result: SilverResult, max_rate: float, key: AssetKey) -> AssetCheckResult:
    """Fail when too much of a partition is quarantined; name the top reasons and an example."""
    evaluated = result.bronze_rows - result.duplicates.height
    rate = result.quarantine.height / evaluated if evaluated else 0.0
    top = list(result.quarantine_by_reason.items())[:3]
    example = None
    if result.quarantine.height:
        worst = result.quarantine.filter(pl.col("quarantine_reason") == top[0][0]).row(0, named=True)
        example = (
            f"{worst['_source_file']}:{worst['_line']}: {worst['quarantine_detail']} — "
            f"{(worst['_raw'] or '')[:200]!r}"
        )
    passed = rate <= max_rate
    reasons = ", ".join(f"{r} ({n})" for r, n in top) or "none"
    description = (
        f"{rate:.2%} of rows quarantined (limit {max_rate:.2%}); top reasons: {reasons}"
        + (f"; example {example}" if example else "")
    )
    if not passed:
        description += (
            ". Inspect lake/quarantine for this partition, fix or re-deliver the upstream "
            "files, then re-run the partition (or raise REFINERY_MAX_QUARANTINE_RATE)."
        )
    return AssetCheckResult(
        asset_key=key,
        check_name="quarantine_rate",
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "quarantine_rate": rate,
            "max_quarantine_rate": max_rate,
            "top_reasons": MetadataValue.json(dict(top)),
            "example": example or "none",
        },
    )


def build_silver_asset(table: str):
    key = AssetKey(["silver", table])
    contract = CONTRACTS[table]

    @asset(
        key=key,
        deps=[AssetKey(["bronze", table])],
        group_name="silver",
        kinds={"polars", "pandera", "parquet"},
        partitions_def=daily_partitions,
        description=_DESCRIPTIONS[table],
        metadata={"dagster/column_schema": contract.dagster_table_schema()},
        check_specs=[
            AssetCheckSpec(
                "row_accounting",
                asset=key,
                blocking=True,
                description="bronze rows = silver rows + quarantined rows + duplicates dropped, "
                "counted from the written files",
            ),
            AssetCheckSpec(
                "contract",
                asset=key,
                blocking=True,
                description=f"Pandera {contract.name} contract on the written partition",
            ),
            AssetCheckSpec(
                "quarantine_rate",
                asset=key,
                blocking=True,
                description="share of the partition's rows quarantined stays under the policy limit",
            ),
        ],
    )
    def _silver(context: AssetExecutionContext, lake: LakeResource, policy: QualityPolicy):
        arrival = date.fromisoformat(context.partition_key)
        paths = lake.paths
        bronze_parts = paths.partition_parts("bronze", table, context.partition_key)
        if not bronze_parts:
            raise FileNotFoundError(
                f"bronze/{table} has no partition {context.partition_key} "
                f"({paths.partition_dir('bronze', table, context.partition_key)}). "
                f"Materialize bronze/{table} for this date first."
            )
        target = paths.partition_dir("silver", table, context.partition_key)
        staging = target.with_name(f".staging-{uuid.uuid4().hex}")
        if table == "events":
            prior = prior_event_ids(paths, arrival, policy.dedupe_lookback_days)
            result = write_silver_events(bronze_parts, prior, staging)
        else:
            result = clean_snapshot(pl.scan_parquet(bronze_parts), table)
            write_parquet_atomic(result.silver, staging / "part-0.parquet")
            result.silver = result.silver.clear()
        q_target = paths.partition_dir("quarantine", table, context.partition_key)
        q_staging = q_target.with_name(f".staging-{uuid.uuid4().hex}")
        write_parquet_atomic(result.quarantine, q_staging / "part-0.parquet")
        write_parquet_atomic(result.duplicates, q_staging / "duplicates.parquet")
        replace_dir_atomic(q_staging, q_target)
        replace_dir_atomic(staging, target)

        # The checks read back what was written, part by part or as a lazy scan.
        parts = paths.partition_parts("silver", table, context.partition_key)
        written = pl.scan_parquet(parts)
        accounting = {
            "bronze_rows": pl.scan_parquet(bronze_parts).select(pl.len()).collect().item(),
            "silver_rows": written.select(pl.len()).collect().item(),
            "quarantined_rows": pl.scan_parquet(q_target / "part-0.parquet").select(pl.len()).collect().item(),
            "duplicates_dropped": pl.scan_parquet(q_target / "duplicates.parquet").select(pl.len()).collect().item(),
        }
        balanced = accounting["bronze_rows"] == (
            accounting["silver_rows"] + accounting["quarantined_rows"] + accounting["duplicates_dropped"]
        )
        newest = (
            written.select(pl.col("event_time").max()).collect().item()
            if table == "events"
            else _snapshot_time(arrival)
        )
        metadata = quality_metadata(
            written,
            contract,
            passing_rows=accounting["silver_rows"],
            evaluated_rows=accounting["bronze_rows"] - accounting["duplicates_dropped"],
            newest=newest,
            half_life_hours=policy.freshness_half_life_hours,
            path=target,
        )
        metadata |= {
            **{f"accounting/{k}": v for k, v in accounting.items()},
            "quarantine_by_reason": MetadataValue.json(result.quarantine_by_reason),
            "quarantine_path": MetadataValue.path(str(q_target)),
        }
        yield MaterializeResult(asset_key=key, metadata=metadata)
        yield AssetCheckResult(
            asset_key=key,
            check_name="row_accounting",
            passed=balanced,
            severity=AssetCheckSeverity.ERROR,
            description=(
                "{bronze_rows} bronze = {silver_rows} silver + {quarantined_rows} quarantined + "
                "{duplicates_dropped} duplicates".format(**accounting)
            )
            + ("" if balanced else " — rows were lost or invented; this is a bug, report it"),
            metadata={"accounting": MetadataValue.json(json.loads(json.dumps(accounting)))},
        )
        yield contract_check(parts, contract, check_name="contract", asset_key=key, blocking=True)
        yield quarantine_rate_check(result, policy.max_quarantine_rate, key)

    return _silver


def _snapshot_time(arrival: date):
    from datetime import datetime, time, timezone

    # A snapshot describes the state at the end of its arrival day.
    return datetime.combine(arrival + timedelta(days=1), time.min, timezone.utc)


silver_assets = [build_silver_asset(t) for t in ("events", "users", "products")]
