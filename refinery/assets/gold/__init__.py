"""Gold: dbt-duckdb marts (features, labels, training examples) published as Parquet."""

from refinery.assets.gold.assets import gold_assets, gold_dbt_models
from refinery.assets.gold.dbt_project import dbt_project, dbt_resource, prepare_manifest
from refinery.assets.gold.export import export_marts

__all__ = [
    "dbt_project",
    "dbt_resource",
    "export_marts",
    "gold_assets",
    "gold_dbt_models",
    "prepare_manifest",
]
