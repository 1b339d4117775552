"""Pandera checks on the gold marts, read back from their exported Parquet."""

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetKey,
    MetadataValue,
    asset_check,
)

from refinery.assets.metadata import contract_check
from refinery.contracts.gold import gold_contract
from refinery.resources import LakeResource

CHECKED_MODELS = ("user_daily_features", "labels", "training_examples")


def build_gold_check(model: str):
    key = AssetKey(["gold", model])

    @asset_check(
        asset=key,
        name="contract",
        blocking=True,
        description=f"Pandera contract on every exported lake/gold/{model} partition: keys unique "
        "and present, labels binary, counts and ratios non-negative, shares in [0, 1]",
    )
    def _check(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        files = sorted(lake.paths.gold_dir(model).glob("as_of_date=*/data.parquet"))
        if not files:
            return AssetCheckResult(
                passed=True,
                description=f"no exported {model} partitions yet",
                metadata={"partitions": 0},
            )
        frame = pl.read_parquet(files)
        result = contract_check(
            frame,
            gold_contract(model, frame.schema),
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
