"""Feature profiles: the compact summary of a feature set that drift detection compares against.

A profile is a plain JSON-serialisable dict, so it can be stored beside a published training
set and read back years later without the data. It holds, per feature, what the drift
statistics in `refinery.assets.ml.drift` (statistics, report) need and nothing more:

- numeric (any numeric or Boolean dtype): quantile bin edges of the reference (deciles,
  deduplicated so a discrete feature gets one bin per frequent value), the share of values per
  bin, 101 quantiles (the quantile function, enough for a Wasserstein-1 and a KS estimate),
  mean, std, min and max;
- categorical (String / Categorical / Enum): the frequencies of the top-K categories and an
  `__other__` bucket for the rest;
- for every feature its missing rate (null, and NaN/inf for floats).

Bins are right-closed: bin 0 is (-inf, e1], bin i is (e_i, e_i+1], the last is (e_k, +inf).
Frequencies are shares of the non-missing values; missingness is measured separately.

`build_profile` profiles a reference (a training split). `profile_against` profiles current
data on a reference's bins and categories, so both sides can be compared bin by bin.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

PROFILE_FORMAT = "refinery.feature_profile/1"
OTHER = "__other__"
DEFAULT_TOP_K = 50
DEFAULT_BIN_QUANTILES = tuple(i / 10 for i in range(1, 10))
QUANTILE_POINTS = tuple(i / 100 for i in range(101))
SIGNIFICANT_DIGITS = 10
LABEL_COLUMN = "label"

NUMERIC = "numeric"
CATEGORICAL = "categorical"


def feature_kind(dtype: pl.DataType) -> str:
    """numeric for numbers and Booleans (profiled as 0/1), categorical for text-like dtypes."""
    if dtype.is_numeric() or dtype == pl.Boolean:
        return NUMERIC
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return CATEGORICAL
    raise TypeError(
        f"cannot profile a feature of dtype {dtype}: only numeric, Boolean and String features "
        "are supported; cast the column or leave it out of the feature list"
    )


def round_float(value: float | None, digits: int = SIGNIFICANT_DIGITS) -> float | None:
    """Round to significant digits so a profile does not change with float summation noise."""
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


def _round_list(values: list[float | None]) -> list[float | None]:
    return [round_float(v) for v in values]


def _clean_numeric(name: str, dtype: pl.DataType) -> pl.Expr:
    """The feature as Float64 with NaN and +-inf turned into nulls (they count as missing)."""
    expr = pl.col(name).cast(pl.Float64)
    if dtype.is_float():
        expr = pl.when(expr.is_finite()).then(expr).otherwise(None)
    return expr


def _numeric_aggregations(name: str, dtype: pl.DataType) -> list[pl.Expr]:
    x = _clean_numeric(name, dtype)
    return [
        x.null_count().alias(f"{name}\x00missing"),
        x.mean().alias(f"{name}\x00mean"),
        x.std().alias(f"{name}\x00std"),
        x.min().alias(f"{name}\x00min"),
        x.max().alias(f"{name}\x00max"),
        x.drop_nulls()
        .quantile(list(QUANTILE_POINTS), interpolation="linear")
        .alias(f"{name}\x00quantiles"),
    ]


def _bin_count_aggregations(name: str, dtype: pl.DataType, edges: list[float]) -> list[pl.Expr]:
    """count(x <= e) for every edge: differences of these give right-closed bin counts."""
    x = _clean_numeric(name, dtype)
    return [(x <= edge).sum().alias(f"{name}\x00le{i}") for i, edge in enumerate(edges)]


def _bin_frequencies(cumulative_counts: list[int], present: int) -> list[float]:
    counts = []
    previous = 0
    for cumulative in [*cumulative_counts, present]:
        counts.append(cumulative - previous)
        previous = cumulative
    return [round_float(c / present) if present else 0.0 for c in counts]


def _numeric_summary(stats: dict[str, Any], name: str, rows: int) -> dict[str, Any]:
    missing = int(stats[f"{name}\x00missing"])
    present = rows - missing
    quantiles = stats[f"{name}\x00quantiles"]
    return {
        "type": NUMERIC,
        "rows": rows,
        "count": present,
        "missing_rate": round_float(missing / rows) if rows else 0.0,
        "mean": round_float(stats[f"{name}\x00mean"]),
        "std": round_float(stats[f"{name}\x00std"]),
        "min": round_float(stats[f"{name}\x00min"]),
        "max": round_float(stats[f"{name}\x00max"]),
        "quantiles": _round_list(list(quantiles)) if present else [],
    }


def _category_counts(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """(value, count) of non-null values, most frequent first, ties by value (deterministic)."""
    return (
        frame.lazy()
        .select(pl.col(name).cast(pl.String).alias("value"))
        .drop_nulls()
        .group_by("value")
        .len(name="count")
        .sort(["count", "value"], descending=[True, False])
        .collect()
    )


def _categorical_summary(
    frame: pl.DataFrame, name: str, rows: int, categories: list[str] | None, top_k: int
) -> dict[str, Any]:
    counts = _category_counts(frame, name)
    present = int(counts["count"].sum()) if counts.height else 0
    observed = dict(zip(counts["value"].to_list(), counts["count"].to_list(), strict=True))
    if categories is None:
        categories = [v for v in counts["value"].to_list() if v != OTHER][:top_k]
    frequencies: dict[str, float | None] = {}
    kept = 0
    for category in categories:
        count = observed.get(category, 0)
        kept += count
        frequencies[category] = round_float(count / present) if present else 0.0
    frequencies[OTHER] = round_float((present - kept) / present) if present else 0.0
    summary = {
        "type": CATEGORICAL,
        "rows": rows,
        "count": present,
        "missing_rate": round_float((rows - present) / rows) if rows else 0.0,
        "distinct": len(observed),
        "frequencies": frequencies,
    }
    return summary


def _label_rate(frame: pl.DataFrame) -> float | None:
    if LABEL_COLUMN not in frame.columns:
        return None
    return round_float(frame.select(pl.col(LABEL_COLUMN).cast(pl.Float64).mean()).item())


def _check_columns(frame: pl.DataFrame, feature_columns: list[str]) -> None:
    absent = [c for c in feature_columns if c not in frame.columns]
    if absent:
        raise KeyError(
            f"feature columns {absent} are not in the frame (columns: {frame.columns}); "
            "pass the feature list of this dataset"
        )


def build_profile(
    frame: pl.DataFrame,
    feature_columns: list[str],
    *,
    top_k: int = DEFAULT_TOP_K,
    bin_quantiles: tuple[float, ...] = DEFAULT_BIN_QUANTILES,
) -> dict[str, Any]:
    """The reference profile of `frame`: same frame in, same dict out (floats rounded).

    Bin edges are the `bin_quantiles` of the non-missing values (lower interpolation, so edges
    are real values and a discrete feature's bins fall between its values), deduplicated.
    """
    _check_columns(frame, feature_columns)
    rows = frame.height
    schema = frame.schema
    kinds = {name: feature_kind(schema[name]) for name in feature_columns}
    numeric = [n for n in feature_columns if kinds[n] == NUMERIC]

    aggregations: list[pl.Expr] = []
    for name in numeric:
        aggregations += _numeric_aggregations(name, schema[name])
        aggregations.append(
            _clean_numeric(name, schema[name])
            .drop_nulls()
            .quantile(list(bin_quantiles), interpolation="lower")
            .alias(f"{name}\x00edges")
        )
    stats = frame.select(aggregations).row(0, named=True) if aggregations else {}

    edges_by_feature = {
        name: sorted({round_float(e) for e in (stats[f"{name}\x00edges"] or []) if e is not None})
        for name in numeric
    }
    bin_aggregations = [
        expr
        for name in numeric
        for expr in _bin_count_aggregations(name, schema[name], edges_by_feature[name])
    ]
    bin_stats = frame.select(bin_aggregations).row(0, named=True) if bin_aggregations else {}

    features: dict[str, Any] = {}
    for name in feature_columns:
        if kinds[name] == CATEGORICAL:
            features[name] = _categorical_summary(frame, name, rows, None, top_k)
            continue
        summary = _numeric_summary(stats, name, rows)
        edges = edges_by_feature[name]
        cumulative = [int(bin_stats[f"{name}\x00le{i}"]) for i in range(len(edges))]
        summary["bin_edges"] = edges
        summary["bin_frequencies"] = _bin_frequencies(cumulative, summary["count"])
        features[name] = summary

    return {
        "format": PROFILE_FORMAT,
        "rows": rows,
        "label_rate": _label_rate(frame),
        "top_k": top_k,
        "quantile_points": len(QUANTILE_POINTS),
        "features": features,
    }


def profile_against(frame: pl.DataFrame, reference: dict[str, Any]) -> dict[str, Any]:
    """Profile `frame` on the reference's bin edges and categories (for a bin-by-bin comparison).

    Features the reference knows but the frame lacks are left out; the drift report names them.
    A feature whose kind changed (e.g. numeric became String) is profiled by its new kind.
    """
    rows = frame.height
    schema = frame.schema
    ref_features = reference.get("features", {})
    present = [n for n in ref_features if n in frame.columns]
    kinds = {name: feature_kind(schema[name]) for name in present}

    numeric = [n for n in present if kinds[n] == NUMERIC and ref_features[n]["type"] == NUMERIC]
    aggregations: list[pl.Expr] = []
    for name in numeric:
        aggregations += _numeric_aggregations(name, schema[name])
        aggregations += _bin_count_aggregations(
            name, schema[name], ref_features[name].get("bin_edges", [])
        )
    stats = frame.select(aggregations).row(0, named=True) if aggregations else {}

    features: dict[str, Any] = {}
    for name in present:
        ref = ref_features[name]
        if kinds[name] == CATEGORICAL:
            categories = [c for c in ref.get("frequencies", {}) if c != OTHER]
            top_k = reference.get("top_k", DEFAULT_TOP_K)
            chosen = categories if ref["type"] == CATEGORICAL else None
            features[name] = _categorical_summary(frame, name, rows, chosen, top_k)
        elif name in numeric:
            summary = _numeric_summary(stats, name, rows)
            edges = ref.get("bin_edges", [])
            cumulative = [int(stats[f"{name}\x00le{i}"]) for i in range(len(edges))]
            summary["bin_edges"] = edges
            summary["bin_frequencies"] = _bin_frequencies(cumulative, summary["count"])
            features[name] = summary
        else:
            features[name] = build_profile(frame.select(name), [name])["features"][name]

    return {
        "format": PROFILE_FORMAT,
        "rows": rows,
        "label_rate": _label_rate(frame),
        "top_k": reference.get("top_k", DEFAULT_TOP_K),
        "quantile_points": len(QUANTILE_POINTS),
        "features": features,
    }
