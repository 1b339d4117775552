"""Equality of feature tables: same (user_id, as_of_date) keys, same value in every column.

A faster wrong answer is not a result, so the benchmark calls `assert_same_features` before it
reports any time. Floats compare within a relative tolerance (summation order differs between
engines); everything else, nulls included, must be identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

KEY = ("user_id", "as_of_date")


class FeatureMismatch(AssertionError):
    """Two implementations disagree; the message names the column, key and both values."""


@dataclass(frozen=True)
class Comparison:
    rows: int
    columns: int
    max_relative_float_error: float


def read_gold(lake_root: Path, model: str, first: date, last: date) -> pl.DataFrame:
    """refinery's exported mart for as-of dates first..last (inclusive)."""
    files = sorted((Path(lake_root) / "lake" / "gold" / model).glob("as_of_date=*/data.parquet"))
    wanted = [f for f in files if first <= date.fromisoformat(f.parent.name.split("=")[1]) <= last]
    if not wanted:
        raise FeatureMismatch(f"refinery wrote no {model} partitions for {first}..{last}")
    return pl.concat([pl.read_parquet(f) for f in wanted], how="vertical_relaxed")


def assert_same_features(
    expected: pl.DataFrame,
    actual: pl.DataFrame,
    *,
    what: str,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> Comparison:
    """Raise FeatureMismatch unless both frames hold the same keys and values in every column."""
    missing = [c for c in expected.columns if c not in actual.columns]
    extra = [c for c in actual.columns if c not in expected.columns]
    if missing or extra:
        raise FeatureMismatch(f"{what}: columns differ; missing {missing}, extra {extra}")
    dupes = actual.group_by(KEY).len().filter(pl.col("len") > 1).height
    if dupes:
        raise FeatureMismatch(f"{what}: {dupes} duplicated (user_id, as_of_date) keys")
    joined = expected.join(actual, on=list(KEY), how="full", suffix="__actual", coalesce=False)
    only_expected = joined.filter(pl.col("user_id__actual").is_null())
    only_actual = joined.filter(pl.col("user_id").is_null())
    if only_expected.height or only_actual.height:
        sample = (only_expected.height and only_expected.row(0, named=True)) or only_actual.row(
            0, named=True
        )
        raise FeatureMismatch(
            f"{what}: keys differ: {only_expected.height} only in the reference, "
            f"{only_actual.height} only in the candidate; e.g. "
            f"{ {k: sample.get(k) or sample.get(k + '__actual') for k in KEY} }"
        )
    worst = 0.0
    for column in expected.columns:
        if column in KEY:
            continue
        left, right = pl.col(column), pl.col(f"{column}__actual")
        dtype = expected.schema[column]
        if dtype.is_float() or actual.schema[column].is_float():
            left, right = left.cast(pl.Float64), right.cast(pl.Float64)
            tolerance = abs_tol + rel_tol * pl.max_horizontal(left.abs(), right.abs())
            equal = (left.is_null() & right.is_null()) | ((left - right).abs() <= tolerance)
            relative = (left - right).abs() / pl.max_horizontal(left.abs(), right.abs(), 1e-300)
            err = joined.select(relative.max()).item()
            worst = max(worst, err or 0.0)
        elif dtype.is_numeric():
            equal = left.cast(pl.Int64).eq_missing(right.cast(pl.Int64))
        else:
            equal = left.cast(pl.String).eq_missing(right.cast(pl.String))
        bad = joined.filter(~equal.fill_null(False))
        if bad.height:
            row = bad.row(0, named=True)
            raise FeatureMismatch(
                f"{what}: column {column!r} differs on {bad.height} of {joined.height} rows; "
                f"e.g. user_id={row['user_id']} as_of_date={row['as_of_date']}: "
                f"reference={row[column]!r} candidate={row[f'{column}__actual']!r}"
            )
    return Comparison(joined.height, len(expected.columns), worst)
