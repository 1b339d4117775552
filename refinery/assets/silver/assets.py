"""silver/events, silver/users, silver/products: typed, clean, deduplicated, contract-validated.

Silver partitions are lake/silver/<table>/date=<A>/part-<i>.parquet (events: one part per bronze
part). Rejected rows land in lake/quarantine/<table>/date=<A>/part-0.parquet with their reason;
dropped duplicates in duplicates.parquet beside them. Three blocking checks stop the line:
the accounting invariant, the contract, and the quarantine rate.
"""

from datetime import UTC, date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
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

from refinery.assets.metadata import contract_check, counts_table, quality_metadata, run_partitions
from refinery.assets.silver.event_index import prior_rows
from refinery.assets.silver.transform import (
    SilverResult,
    by_reason,
    clean_snapshot,
    conflicts,
    detached,
    duplicate_fates,
    keep_first_arrivals,
    split_events,
)
from refinery.contracts.rules import Contract
from refinery.contracts.silver import CONTRACTS, events_contract
from refinery.faults import kill_point
from refinery.partitions import daily_partitions
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.lake import LakePaths, replace_dir_atomic, write_parquet_atomic

_DESCRIPTIONS = {
    "events": "Valid events of one arrival date: typed, UTC, lower-cased, deduplicated by event_id "
    "within the day and against every earlier day.",
    "users": "The CRM snapshot of one arrival date, typed and validated; one row per user.",
    "products": "The catalogue snapshot of one arrival date, typed and validated; one row per product.",
}


# Typed silver rows of a day held in memory until deduplication decides which to keep, so each
# part is written once; parts beyond this (Polars' estimate) are written as typed and rewritten
# without their duplicates, so memory follows the part, not the day, on a very large day.
HELD_SILVER_BYTES = 512 * 1024 * 1024


def write_silver_events(
    bronze_parts: list[Path],
    paths: LakePaths,
    arrival: date,
    staging: Path,
    contract: Contract,
    held_bytes: int = HELD_SILVER_BYTES,
) -> SilverResult:
    """Silver events of one day written as `staging/part-<i>.parquet`, one per bronze part.

    Typing and validation go part by part. Deduplication needs the whole day: it runs once over
    the event_id column of the day's typed parts (in arrival order) and the rows earlier
    partitions hold for those ids (`prior_rows`). Typed parts are held in memory up to
    `held_bytes` and written once, without their duplicates; a part beyond that is written when
    typed (memory follows the part size, 128 MB of landing text) and rewritten if it held a
    duplicate. Returns the day's quarantine and duplicates (each with its reason); `silver` is
    left empty.
    """
    parts, quarantined, bronze_rows, held = [], [], 0, 0
    for i, bronze_part in enumerate(bronze_parts):
        split = split_events(pl.scan_parquet(bronze_part), contract)
        part, silver = staging / f"part-{i}.parquet", split.silver
        size = silver.estimated_size()
        if held + size > held_bytes:
            write_parquet_atomic(silver, part)
            silver = None
        else:
            held += size
        parts.append([part, split.silver.height, silver])
        quarantined.append(detached(split.quarantine))  # not a view into the whole part
        bronze_rows += split.bronze_rows
        del split, silver
    kill_point("silver.after_parts")
    ids = pl.concat(
        [
            pl.read_parquet(part, columns=["event_id"]).get_column("event_id")
            if frame is None
            else frame.get_column("event_id")
            for part, _, frame in parts
        ]
    )
    prior = prior_rows(paths, arrival, ids)
    keep = keep_first_arrivals(ids, prior.get_column("event_id"))
    dropped_ids = ids.filter(~keep).unique()
    del ids
    duplicates, offset = [], 0
    for entry in parts:
        part, rows, frame = entry
        part_keep = keep.slice(offset, rows)
        offset += rows
        if frame is None and not part_keep.all():
            frame = pl.read_parquet(part)
        if frame is not None:
            if not part_keep.all():
                duplicates.append(detached(frame.filter(~part_keep)))
                frame = frame.filter(part_keep)
            write_parquet_atomic(frame, part)
            entry[2] = frame = None
    written = [part for part, _, _ in parts]
    silver_empty = pl.read_parquet(written[0], n_rows=0)
    # the originals of the day's own duplicates, wherever in the day they are
    originals = pl.concat(
        [
            prior.select(silver_empty.columns),
            pl.scan_parquet(written)
            .filter(pl.col("event_id").is_in(dropped_ids.implode()))
            .collect(),
        ]
    )
    quarantine = pl.concat(quarantined)
    dropped = pl.concat(duplicates) if duplicates else silver_empty
    return SilverResult(
        silver=silver_empty,
        quarantine=quarantine,
        duplicates=duplicate_fates(dropped, originals),
        bronze_rows=bronze_rows,
        quarantine_by_reason=by_reason(quarantine),
    )


def previous_snapshot_rows(paths: LakePaths, table: str, arrival: date) -> tuple[str, int] | None:
    """(date, rows) of the latest silver snapshot before `arrival`, from the Parquet footers."""
    earlier = [d for d in paths.existing_partitions("silver", table) if d < arrival.isoformat()]
    if not earlier:
        return None
    day = earlier[-1]
    rows = sum(pq.read_metadata(p).num_rows for p in paths.partition_parts("silver", table, day))
    return day, rows


def snapshot_volume_check(
    table: str, rows: int, previous: tuple[str, int] | None, max_shrink: float, key: AssetKey
) -> AssetCheckResult:
    """A full snapshot that is empty, or much smaller than the one before, is a broken export,
    not a shop that lost its customers overnight: fail, saying which and by how much."""
    floor = None if previous is None else previous[1] * (1.0 - max_shrink)
    if rows == 0:
        passed, why = False, f"the {table} snapshot has no valid rows"
    elif floor is not None and rows < floor:
        passed = False
        why = (
            f"the {table} snapshot shrank from {previous[1]} rows ({previous[0]}) to {rows} "
            f"({1 - rows / previous[1]:.1%} fewer; the limit is {max_shrink:.0%})"
        )
    else:
        passed = True
        why = f"{rows} valid rows" + (
            f" (previous snapshot {previous[0]}: {previous[1]})"
            if previous
            else " (first snapshot)"
        )
    if not passed:
        why += (
            ". A full daily snapshot is expected: check the export, re-deliver it and re-run this "
            "partition (or raise REFINERY_MAX_SNAPSHOT_SHRINK if the shrink is real)."
        )
    return AssetCheckResult(
        asset_key=key,
        check_name="snapshot_volume",
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=why,
        metadata={
            "rows": rows,
            "previous_rows": previous[1] if previous else -1,
            "previous_date": previous[0] if previous else "none",
            "max_shrink": max_shrink,
        },
    )


def quarantine_rate_check(result: SilverResult, max_rate: float, key: AssetKey) -> AssetCheckResult:
    """Fail when too much of a partition is quarantined; name the top reasons and an example."""
    evaluated = result.bronze_rows - result.duplicates.height
    rate = result.quarantine.height / evaluated if evaluated else 0.0
    top = list(result.quarantine_by_reason.items())[:3]
    example = None
    if result.quarantine.height:
        worst = result.quarantine.filter(pl.col("quarantine_reason") == top[0][0]).row(
            0, named=True
        )
        example = (
            f"{worst['_source_file']}:{worst['_line']}: {worst['quarantine_detail']} — "
            f"{(worst['_raw'] or '')[:200]!r}"
        )
    fully = evaluated > 0 and result.quarantine.height == evaluated
    passed = rate <= max_rate and not fully
    reasons = ", ".join(f"{r} ({n})" for r, n in top) or "none"
    description = (
        f"{rate:.2%} of rows quarantined (limit {max_rate:.2%}); top reasons: {reasons}"
        + (f"; example {example}" if example else "")
    )
    if fully:
        description = (
            "every row of the partition was quarantined (nothing reached silver); " + description
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
            "quarantine_rate": round(rate, 6),
            "max_quarantine_rate": max_rate,
            "quarantined_rows": result.quarantine.height,
            "evaluated_rows": evaluated,
            "top_reasons": counts_table(dict(top), "reason"),
            "example": example or "none",
        },
    )


def build_silver_asset(table: str):
    key = AssetKey(["silver", table])
    contract = CONTRACTS[table]

    volume_check = (
        [
            AssetCheckSpec(
                "snapshot_volume",
                asset=key,
                partitions_def=daily_partitions,
                blocking=True,
                description="the snapshot is not empty and not sharply smaller than the previous "
                "one (REFINERY_MAX_SNAPSHOT_SHRINK)",
            )
        ]
        if table != "events"
        else [
            AssetCheckSpec(
                "duplicate_conflicts",
                asset=key,
                partitions_def=daily_partitions,
                blocking=False,
                description="warns when an event_id arrives again with different content",
            )
        ]
    )

    @asset(
        key=key,
        deps=[AssetKey(["bronze", table])],
        group_name="silver",
        kinds={"polars", "pandera", "parquet"},
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description=_DESCRIPTIONS[table],
        metadata={"dagster/column_schema": contract.dagster_table_schema()},
        check_specs=[
            AssetCheckSpec(
                "row_accounting",
                asset=key,
                partitions_def=daily_partitions,
                blocking=True,
                description="bronze rows = silver rows + quarantined rows + duplicates dropped, "
                "counted from the written files",
            ),
            AssetCheckSpec(
                "contract",
                asset=key,
                partitions_def=daily_partitions,
                blocking=True,
                description=f"Pandera {contract.name} contract on the written partition",
            ),
            AssetCheckSpec(
                "quarantine_rate",
                asset=key,
                partitions_def=daily_partitions,
                blocking=True,
                description="share of the partition's rows quarantined stays under the policy limit",
            ),
            *volume_check,
        ],
    )
    def _silver(context: AssetExecutionContext, lake: LakeResource, policy: QualityPolicy):
        yield from run_partitions(
            context,
            key,
            lambda partition: silver_day(lake, policy, table, partition),
        )

    return _silver


def silver_day(
    lake: LakeResource, policy: QualityPolicy, table: str, partition: str
) -> tuple[dict, list[AssetCheckResult]]:
    """Write and commit one silver partition (after every earlier one: events dedupe against
    them); its metadata and check results."""
    key = AssetKey(["silver", table])
    arrival = date.fromisoformat(partition)
    paths = lake.paths
    bronze_parts = paths.partition_parts("bronze", table, partition)
    if not bronze_parts:
        raise FileNotFoundError(
            f"bronze/{table} has no partition {partition} "
            f"({paths.partition_dir('bronze', table, partition)}). "
            f"Materialize bronze/{table} for this date first."
        )
    kill_point("silver.start")  # the bronze → silver boundary: bronze committed, silver not begun
    paths.sweep_staging()
    target = paths.partition_dir("silver", table, partition)
    staging = paths.staging_dir("silver", table, partition)
    contract = (
        events_contract(policy.min_event_time, policy.max_event_age_days)
        if table == "events"
        else CONTRACTS[table]
    )
    if table == "events":
        result = write_silver_events(bronze_parts, paths, arrival, staging, contract)
    else:
        result = clean_snapshot(pl.scan_parquet(bronze_parts), table)
        write_parquet_atomic(result.silver, staging / "part-0.parquet")
        result.silver = result.silver.clear()
    q_target = paths.partition_dir("quarantine", table, partition)
    q_staging = paths.staging_dir("quarantine", table, partition)
    write_parquet_atomic(result.quarantine, q_staging / "part-0.parquet")
    write_parquet_atomic(result.duplicates, q_staging / "duplicates.parquet")
    kill_point("silver.before_swap")
    replace_dir_atomic(q_staging, q_target)
    kill_point("silver.between_swaps")
    replace_dir_atomic(staging, target)

    # The checks read back what was written, part by part or as a lazy scan.
    parts = paths.partition_parts("silver", table, partition)
    written = pl.scan_parquet(parts)
    accounting = {
        "bronze_rows": pl.scan_parquet(bronze_parts).select(pl.len()).collect().item(),
        "silver_rows": written.select(pl.len()).collect().item(),
        "quarantined_rows": pl.scan_parquet(q_target / "part-0.parquet")
        .select(pl.len())
        .collect()
        .item(),
        "duplicates_dropped": pl.scan_parquet(q_target / "duplicates.parquet")
        .select(pl.len())
        .collect()
        .item(),
    }
    balanced = accounting["bronze_rows"] == (
        accounting["silver_rows"]
        + accounting["quarantined_rows"]
        + accounting["duplicates_dropped"]
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
        "quarantine_by_reason": counts_table(result.quarantine_by_reason, "reason"),
        "duplicates_by_reason": counts_table(_duplicate_reasons(result.duplicates), "reason"),
        "quarantine_path": MetadataValue.path(str(q_target)),
    }
    checks = [
        AssetCheckResult(
            asset_key=key,
            check_name="row_accounting",
            passed=balanced,
            severity=AssetCheckSeverity.ERROR,
            description=(
                "{bronze_rows} bronze = {silver_rows} silver + {quarantined_rows} quarantined + "
                "{duplicates_dropped} duplicates".format(**accounting)
            )
            + ("" if balanced else " — rows were lost or invented; this is a bug, report it"),
            metadata={"accounting": counts_table(accounting, "count")},
        )
    ]
    checks.append(
        contract_check(parts, contract, check_name="contract", asset_key=key, blocking=True)
    )
    checks.append(quarantine_rate_check(result, policy.max_quarantine_rate, key))
    if table == "events":
        checks.append(conflict_check(result, key))
    else:
        previous = previous_snapshot_rows(paths, table, arrival)
        checks.append(
            snapshot_volume_check(
                table, accounting["silver_rows"], previous, policy.max_snapshot_shrink, key
            )
        )
    return metadata, checks


def _duplicate_reasons(duplicates: pl.DataFrame) -> dict[str, int]:
    if "duplicate_reason" not in duplicates.columns or duplicates.height == 0:
        return {}
    counts = duplicates.group_by("duplicate_reason").len().sort("duplicate_reason")
    return dict(zip(counts["duplicate_reason"].to_list(), counts["len"].to_list()))


def conflict_check(result: SilverResult, key: AssetKey) -> AssetCheckResult:
    """Warn when an event_id came again with different content: the first arrival was kept, but
    upstream is telling two stories about one event."""
    n = conflicts(result.duplicates)
    example = "none"
    if n:
        row = result.duplicates.filter(pl.col("duplicate_reason") == "conflicting_duplicate").row(
            0, named=True
        )
        example = (
            f"{row['event_id']} at {row['_source_file']}:{row['_line']} differs from the kept "
            f"{row['original_source_file']}:{row['original_line']} ({row['original_arrival_date']})"
        )
    return AssetCheckResult(
        asset_key=key,
        check_name="duplicate_conflicts",
        passed=n == 0,
        severity=AssetCheckSeverity.WARN,
        description=f"{n} duplicate event_id(s) with different content; e.g. {example}"
        if n
        else "every duplicate repeats its original exactly",
        metadata={"conflicting_duplicates": n, "example": example},
    )


def _snapshot_time(arrival: date):
    from datetime import datetime, time

    # A snapshot describes the state at the end of its arrival day.
    return datetime.combine(arrival + timedelta(days=1), time.min, UTC)


silver_assets = [build_silver_asset(t) for t in ("events", "users", "products")]
