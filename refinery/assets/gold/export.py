"""Publish dbt marts from the DuckDB warehouse as one Parquet file per as-of date."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from refinery.resources.lake import write_parquet_atomic

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def mart_file(gold_dir: Path, model: str, as_of_date: date) -> Path:
    return gold_dir / model / f"as_of_date={as_of_date.isoformat()}" / "data.parquet"


def export_marts(
    warehouse_path: Path,
    gold_dir: Path,
    models: Sequence[str],
    as_of_dates: Sequence[date],
) -> dict[str, int]:
    """Write each model's rows of each as-of date to `gold_dir/<model>/as_of_date=<D>/data.parquet`.

    Rows are sorted by user_id and written by Polars with the lake's fixed settings, so the same
    rows give the same bytes. (DuckDB's own COPY does not: its string encoding follows how the
    table happens to be stored, which changes as incremental runs delete and insert.) Each file is
    written beside its target and renamed into place, so a reader never sees half a file. A date without rows gets no file (and loses a stale one: a
    rerun replaces). The warehouse is opened read-only: dbt, the only writer, has finished.

    Returns the number of rows exported per model.
    """
    for model in models:
        if not _IDENTIFIER.fullmatch(model):
            raise ValueError(
                f"export_marts: {model!r} is not a dbt model name (expected [a-z_0-9]+)"
            )
    if not Path(warehouse_path).exists():
        raise FileNotFoundError(
            f"export_marts: no DuckDB warehouse at {warehouse_path}; run `dbt build` for the gold "
            "models first (the gold Dagster assets do this)."
        )
    rows_per_model: dict[str, int] = {}
    with duckdb.connect(str(warehouse_path), read_only=True) as warehouse:
        existing = {
            name for (name,) in warehouse.sql("select table_name from duckdb_tables()").fetchall()
        }
        for model in models:
            if model not in existing:
                raise LookupError(
                    f"export_marts: table {model!r} is missing from {warehouse_path}; "
                    f"run `dbt build --select {model}` for the needed dates first."
                )
            rows_per_model[model] = sum(
                _export_one_date(warehouse, gold_dir, model, as_of_date)
                for as_of_date in as_of_dates
            )
    return rows_per_model


def _export_one_date(
    warehouse: duckdb.DuckDBPyConnection, gold_dir: Path, model: str, as_of_date: date
) -> int:
    target = mart_file(gold_dir, model, as_of_date)
    day_rows = f"select * from main.{model} where as_of_date = date '{as_of_date.isoformat()}'"
    day_frame = pl.DataFrame(warehouse.sql(f"{day_rows} order by user_id").pl()).rechunk()
    if day_frame.is_empty():
        target.unlink(missing_ok=True)
        if target.parent.exists() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        return 0
    write_parquet_atomic(day_frame, target)
    return day_frame.height
