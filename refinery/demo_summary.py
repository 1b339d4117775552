"""What the lake holds, read from its files and from the Dagster instance (used by `make demo`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from refinery.resources.lake import SOURCES


def _count(table_dir: Path, pattern: str) -> int:
    files = sorted(table_dir.glob(pattern))
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0


def layer_rows(root: Path) -> pl.DataFrame:
    lake = root / "lake"
    rows = []
    for table in SOURCES:
        rows.append(
            {
                "table": table,
                "bronze": _count(lake / "bronze" / table, "date=*/*.parquet"),
                "silver": _count(lake / "silver" / table, "date=*/part-*.parquet"),
                "quarantined": _count(lake / "quarantine" / table, "date=*/part-0.parquet"),
                "duplicates": _count(lake / "quarantine" / table, "date=*/duplicates.parquet"),
            }
        )
    for model in ("user_daily_features", "labels", "training_examples"):
        rows.append(
            {
                "table": f"gold/{model}",
                "silver": None,
                "bronze": None,
                "quarantined": None,
                "duplicates": None,
                "gold": _count(lake / "gold" / model, "as_of_date=*/data.parquet"),
            }
        )
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        balanced=pl.when(pl.col("bronze").is_not_null()).then(
            pl.col("bronze") == pl.col("silver") + pl.col("quarantined") + pl.col("duplicates")
        )
    )


def quarantine_by_reason(root: Path) -> pl.DataFrame:
    files = sorted((root / "lake" / "quarantine").glob("*/date=*/part-0.parquet"))
    if not files:
        return pl.DataFrame({"reason": [], "rows": []})
    frames = [
        pl.scan_parquet(f)
        .select("quarantine_reason")
        .with_columns(table=pl.lit(f.parent.parent.name))
        for f in files
    ]
    return (
        pl.concat(frames)
        .group_by("table", "quarantine_reason")
        .agg(rows=pl.len())
        .sort(["table", "rows"], descending=[False, True])
        .collect()
    )


def check_results() -> pl.DataFrame:
    from dagster import DagsterInstance

    from refinery.definitions import defs

    instance = DagsterInstance.get()
    rows = []
    for key in sorted(
        defs.resolve_asset_graph().asset_check_keys, key=lambda k: k.to_user_string()
    ):
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if not history:
            continue
        record = history[0]
        event = record.event.dagster_event if record.event else None
        evaluation = event.event_specific_data if event else None
        rows.append(
            {
                "asset": key.asset_key.to_user_string(),
                "check": key.name,
                "status": record.status.value,
                "passed": getattr(evaluation, "passed", None),
                "severity": getattr(getattr(evaluation, "severity", None), "value", None),
            }
        )
    frame = pl.DataFrame(rows)
    return (
        frame.group_by("status", "passed", "severity").agg(
            checks=pl.len(), examples=pl.concat_str("asset", pl.lit(":"), "check").head(3)
        )
        if frame.height
        else frame
    )
