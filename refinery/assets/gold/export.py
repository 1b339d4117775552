"""Publish dbt marts from the DuckDB warehouse as one Parquet file per as-of date."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from refinery.faults import kill_point
from refinery.resources.lake import write_parquet_atomic

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
# as-of dates per export query: a week of a 100k-user mart is ~0.3 GB in memory
DATES_PER_QUERY = 7


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
    as_of_dates = list(as_of_dates)
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
                _export_dates(warehouse, gold_dir, model, as_of_dates[i : i + DATES_PER_QUERY])
                for i in range(0, len(as_of_dates), DATES_PER_QUERY)
            )
    return rows_per_model


def _export_dates(
    warehouse: duckdb.DuckDBPyConnection, gold_dir: Path, model: str, as_of_dates: list[date]
) -> int:
    """One query for several as-of dates (a query per date rescans the table each time), split
    into one file per date."""
    if not as_of_dates:
        return 0
    wanted = ", ".join(f"date '{d.isoformat()}'" for d in as_of_dates)
    frame = pl.DataFrame(
        warehouse.sql(
            f"select * from main.{model} where as_of_date in ({wanted}) order by as_of_date, user_id"
        ).pl()
    )
    by_date = {key[0]: part for key, part in frame.partition_by("as_of_date", as_dict=True).items()}
    del frame
    rows = 0
    for as_of_date in as_of_dates:
        target = mart_file(gold_dir, model, as_of_date)
        day_frame = by_date.pop(as_of_date, None)
        if day_frame is None:  # partition_by yields no empty frames: no rows for this date
            target.unlink(missing_ok=True)
            if target.parent.exists() and not any(target.parent.iterdir()):
                target.parent.rmdir()
            continue
        write_parquet_atomic(day_frame.rechunk(), target)
        kill_point("gold.export_mid")  # fault tests: some files of this run written, others not
        rows += day_frame.height
    return rows
