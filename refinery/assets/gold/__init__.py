"""Gold: dbt-duckdb marts (features, labels, training examples) published as Parquet."""

from refinery.assets.gold.assets import (
    dbt_project,
    dbt_resource,
    gold_assets,
    gold_dbt_models,
    prepare_manifest,
)
from refinery.assets.gold.export import export_marts

__all__ = [
    "dbt_project",
    "dbt_resource",
    "export_marts",
    "gold_assets",
    "gold_dbt_models",
    "prepare_manifest",
]
