"""Gold: dbt-duckdb marts (features, labels, training examples) published as Parquet.

The names below are loaded on first use (PEP 562), so importing one gold module (the planner,
the dbt preparation) does not build the gold assets, which needs the prepared dbt manifest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "dbt_project": "refinery.assets.gold.dbt_project",
    "dbt_resource": "refinery.assets.gold.dbt_project",
    "prepare_manifest": "refinery.assets.gold.dbt_project",
    "export_marts": "refinery.assets.gold.export",
    "gold_assets": "refinery.assets.gold.assets",
    "gold_dbt_models": "refinery.assets.gold.assets",
}

__all__ = [
    "dbt_project",
    "dbt_resource",
    "export_marts",
    "gold_assets",
    "gold_dbt_models",
    "prepare_manifest",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
