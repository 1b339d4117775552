"""The online store as a Dagster asset, downstream of gold, with its blocking parity check.

Partitioned like gold (knowledge date P = as-of date P of user_daily_features); a run over a
range of partitions is one run (single_run backfill policy, like gold) and one store transaction.
"""

from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from refinery import settings
from refinery.assets.gold.plan import knowledge_date_range
from refinery.online.parity import check_parity
from refinery.online.records import end_of_day
from refinery.online.resource import OnlineStoreResource
from refinery.online.sync import sync_dates
from refinery.partitions import daily_partitions
from refinery.resources import LakeResource

ONLINE_KEY = AssetKey(["online", "user_features"])
GOLD_FEATURES_KEY = AssetKey(["gold", "user_daily_features"])
PARITY_CHECK = "serving_parity"
DEFAULT_PARITY_SAMPLE = settings.ONLINE_PARITY_SAMPLE.default


def training_set_version(lake: LakeResource) -> str | None:
    """The latest published training-set version, None before the first one."""
    from refinery.resources.registry import latest_tag

    return latest_tag(lake.paths.registry)


@asset(
    key=ONLINE_KEY,
    deps=[GOLD_FEATURES_KEY],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="online",
    check_specs=[
        AssetCheckSpec(
            PARITY_CHECK,
            asset=ONLINE_KEY,
            blocking=True,
            description="A sample of users asked of the serving API equals the gold mart of "
            "the as-of date served, value for value (floats exact), and is the newest row.",
        )
    ],
    description="The latest gold feature vector of every user, keyed by user, with its as-of "
    "date and the training-set version, in the online store (SQLite under the data root, or "
    "Redis: REFINERY_ONLINE_STORE). Only users whose record changed are written, in one "
    "transaction per run.",
)
def online_user_features(
    context: AssetExecutionContext, lake: LakeResource, online_store: OnlineStoreResource
):
    first, last = knowledge_date_range(*context.partition_time_window)
    paths = lake.paths
    gold_dir = paths.lake / "gold"
    days = [first.fromordinal(d) for d in range(first.toordinal(), last.toordinal() + 1)]
    version = training_set_version(lake)
    store = online_store.open(paths.root)
    try:
        stats = sync_dates(store, gold_dir, days, version)
        users = store.users()
        size = store.size_bytes()
        newest = stats.watermark
        freshness_hours = (
            round((datetime.now(UTC) - end_of_day(newest)).total_seconds() / 3600, 2)
            if newest
            else None
        )
        context.log.info(
            f"online store {store.describe()}: {stats.users_written} users written for "
            f"{len(stats.as_of_dates)} as-of dates ({stats.users_unchanged} unchanged)"
        )
        yield MaterializeResult(
            metadata={
                "dagster/row_count": stats.users_written,
                "rows_written": stats.users_written,
                "rows_read": stats.rows_read,
                "users_changed": stats.users_changed,
                "users_new": stats.users_new,
                "users_unchanged": stats.users_unchanged,
                "users_skipped_newer": stats.users_skipped_newer,
                "store_users": users,
                "store_size_bytes": MetadataValue.int(size),
                "store": store.describe(),
                "watermark": newest or "none",
                "freshness_hours": MetadataValue.float(freshness_hours)
                if freshness_hours is not None
                else MetadataValue.text("none"),
                "as_of_dates": ", ".join(stats.as_of_dates) or "none",
                "dates_without_gold": ", ".join(stats.missing_dates) or "none",
                "training_set_version": version or "none",
            },
        )
        sample_size = settings.ONLINE_PARITY_SAMPLE.get()
        # users written by this run first (what it changed), topped up with random stored users
        report = check_parity(
            store, gold_dir, sample_size, must_include=stats.written_users[:sample_size]
        )
        yield AssetCheckResult(
            check_name=PARITY_CHECK,
            asset_key=ONLINE_KEY,
            passed=report.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "sampled_users": len(report.sampled),
                "compared_values": report.compared_values,
                "mismatches": len(report.mismatches),
                "sample": MetadataValue.json(report.sampled[:50]),
                "mismatch_examples": MetadataValue.md(_mismatch_table(report.mismatches[:20]))
                if report.mismatches
                else MetadataValue.text("none"),
                "result": "0 mismatches"
                if report.passed
                else (
                    "nothing to sample: the store is empty"
                    if not report.sampled
                    else f"{len(report.mismatches)} mismatches"
                ),
            },
        )
    finally:
        store.close()


def _mismatch_table(rows: list[dict]) -> str:
    lines = ["| user | as-of | feature | served | gold / problem |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row.get('user_id')} | {row.get('as_of_date', '')} | {row.get('feature', '')} "
            f"| {row.get('served', '')} | {row.get('gold', row.get('problem', ''))} |"
        )
    return "\n".join(lines)


online_assets = [online_user_features]
