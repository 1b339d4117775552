"""The quality measures of DESIGN.md, recorded on every materialization."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import polars as pl

DEFAULT_HALF_LIFE_HOURS = 24.0


def completeness(frame: pl.DataFrame | pl.LazyFrame, required: list[str]) -> dict[str, float]:
    """`1 - nulls / rows` per required column, and `table` = the minimum over them.

    A LazyFrame (a scan of written parts) is counted without loading it whole."""
    counts = frame.lazy().select(pl.len().alias("_rows"), pl.col(required).null_count()).collect()
    rows, *nulls = counts.row(0)
    if rows == 0:
        per_column = {c: 1.0 for c in required}
    else:
        per_column = {c: 1.0 - n / rows for c, n in zip(required, nulls)}
    return {**per_column, "table": min(per_column.values(), default=1.0)}


def consistency(passing_rows: int, rows: int) -> float:
    """Share of rows satisfying every constraint of the layer's contract."""
    return 1.0 if rows == 0 else passing_rows / rows


def freshness(
    newest: datetime | None,
    now: datetime | None = None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
) -> float:
    """`exp(-lambda * dt)`, dt in hours from the newest record to now, lambda = ln 2 / half-life."""
    if newest is None:
        return 0.0
    now = now or datetime.now(UTC)
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    hours = max((now - newest).total_seconds() / 3600.0, 0.0)
    return math.exp(-math.log(2) / half_life_hours * hours)
