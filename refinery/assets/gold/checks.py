"""Pandera checks on the gold marts, read back from their exported Parquet."""

from datetime import date
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetKey,
    MetadataValue,
    asset_check,
)

from refinery.assets.gold.export import mart_file
from refinery.assets.gold.plan import as_of_dates_for
from refinery.assets.metadata import contract_check
from refinery.contracts.gold import gold_contract
from refinery.resources import LakeResource

CHECKED_MODELS = ("user_daily_features", "labels", "training_examples")


def knowledge_dates_of_run(tags: dict[str, str]) -> tuple[date, date] | None:
    """The knowledge-date range a run materialized, from its partition tags (None: unpartitioned)."""
    if "dagster/partition" in tags:
        day = date.fromisoformat(tags["dagster/partition"])
        return day, day
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start and end:
        return date.fromisoformat(start), date.fromisoformat(end)
    return None


def files_to_check(gold_dir: Path, model: str, knowledge: tuple[date, date] | None) -> list[Path]:
    """The partitions the run wrote; every exported partition when the check runs on its own.

    Checking only what the run wrote keeps a day's cost flat as history grows; the partitions
    of earlier runs were checked by those runs.
    """
    if knowledge is None:
        return sorted(gold_dir.glob("as_of_date=*/data.parquet"))
    dates = as_of_dates_for(model, *knowledge)
    return [f for f in (mart_file(gold_dir.parent, model, d) for d in dates) if f.exists()]


def build_gold_check(model: str):
    key = AssetKey(["gold", model])

    @asset_check(
        asset=key,
        name="contract",
        blocking=True,
        description=f"Pandera contract on the lake/gold/{model} partitions the run wrote (all of "
        "them when run alone): keys unique and present, labels binary, counts and ratios "
        "non-negative, shares in [0, 1]",
    )
    def _check(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        knowledge = knowledge_dates_of_run(context.run.tags)
        files = files_to_check(lake.paths.gold_dir(model), model, knowledge)
        if not files:
            return AssetCheckResult(
                passed=True,
                description=f"no exported {model} partitions to check for this run",
                metadata={"partitions": 0},
            )
        frame = pl.read_parquet(files)
        result = contract_check(
            frame,
            gold_contract(model),
            check_name="contract",
            asset_key=key,
            blocking=True,
        )
        return AssetCheckResult(
            passed=result.passed,
            severity=result.severity,
            description=result.description,
            metadata={**(result.metadata or {}), "partitions": MetadataValue.int(len(files))},
        )

    return _check


gold_checks = [build_gold_check(m) for m in CHECKED_MODELS]
