"""The drift report: per feature, the statistics (`drift.statistics`) of a reference profile and
the current data, judged against thresholds; then the dataset verdict and the label rate.

Everything here is pure: profiles (dicts from `refinery.assets.ml.profile`) in, numbers and a
report dict out. The Dagster asset only reads Parquet, calls these and writes the result.

Statistics, per feature kind:
- numeric: PSI on the reference's quantile bins, Wasserstein-1 distance of the two quantile
  functions normalised by the reference std, and a KS statistic (with an asymptotic p-value)
  estimated from the quantile functions;
- categorical: PSI and Jensen-Shannon distance on category frequencies, unseen categories
  counted in `__other__`;
- all: the change of the missing rate.

Default thresholds and where they come from:
- PSI >= 0.25 is a significant shift and 0.1-0.25 a moderate one: the credit-scoring rule of
  thumb (Siddiqi, "Credit Risk Scorecards", 2006). Empty bins are clipped to 1e-4 as Evidently
  does, so PSI stays finite when a bin or category appears or vanishes.
- Jensen-Shannon distance (natural log, as `scipy.spatial.distance.jensenshannon` computes it)
  >= 0.1, and Wasserstein-1 / max(reference std, 0.001) >= 0.1: Evidently's defaults for those
  tests (its normalisation too).
- KS p-value < 0.05: the usual significance level. On the sample sizes of a feature store every
  tiny shift is "significant", so KS is reported but does not decide by default (Evidently too
  switches from KS to Wasserstein above 1000 rows).
- missing-rate change >= 0.05 (five percentage points): our choice; no standard exists.
- dataset verdict: drift when the share of drifted features >= 0.5, Evidently's
  DataDriftPreset default, or when any named key feature drifts.
- label rate: drift when the relative change >= 20 % and a two-proportion z-test gives
  p < 0.05 (both a practical and a statistical difference).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import polars as pl

from refinery.assets.ml.drift.statistics import (
    jensen_shannon_distance,
    ks_from_quantiles,
    ks_p_value,
    population_stability_index,
    two_proportion_p_value,
    wasserstein_from_quantiles,
)
from refinery.assets.ml.profile import NUMERIC, OTHER

WASSERSTEIN_MIN_NORM = 1e-3

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no_drift"
VERDICT_NO_REFERENCE = "no_reference"

NUMERIC_TESTS = ("psi", "wasserstein", "ks")
CATEGORICAL_TESTS = ("psi", "jensen_shannon")


@dataclass(frozen=True)
class DriftThresholds:
    """When a statistic counts as drift; see the module docstring for the sources."""

    psi: float = 0.25
    psi_moderate: float = 0.1
    jensen_shannon: float = 0.1
    wasserstein: float = 0.1
    ks_p_value: float = 0.05
    missing_rate_change: float = 0.05
    drift_share: float = 0.5
    key_features: tuple[str, ...] = ()
    numeric_tests: tuple[str, ...] = ("psi", "wasserstein")
    categorical_tests: tuple[str, ...] = ("psi", "jensen_shannon")
    label_rate_relative_change: float = 0.2
    label_rate_p_value: float = 0.05
    label_drift_counts: bool = True

    def __post_init__(self) -> None:
        unknown = [t for t in self.numeric_tests if t not in NUMERIC_TESTS] + [
            t for t in self.categorical_tests if t not in CATEGORICAL_TESTS
        ]
        if unknown:
            raise ValueError(
                f"unknown drift tests {unknown}: numeric tests are {NUMERIC_TESTS}, "
                f"categorical tests are {CATEGORICAL_TESTS}"
            )
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")


# --- per-feature comparison ---------------------------------------------------------------


@dataclass
class FeatureDrift:
    """The comparison of one feature: statistics, verdict and why."""

    feature: str
    kind: str
    drifted: bool
    score: float
    reasons: list[str] = field(default_factory=list)
    psi: float | None = None
    jensen_shannon: float | None = None
    wasserstein_norm: float | None = None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    missing_rate_reference: float | None = None
    missing_rate_current: float | None = None
    missing_rate_change: float | None = None
    mean_reference: float | None = None
    mean_current: float | None = None
    bin_labels: list[str] = field(default_factory=list)
    frequencies_reference: list[float] = field(default_factory=list)
    frequencies_current: list[float] = field(default_factory=list)


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"<= {edges[0]:.4g}"]
    labels += [f"({lo:.4g}, {hi:.4g}]" for lo, hi in pairwise(edges)]
    labels.append(f"> {edges[-1]:.4g}")
    return labels


def _aligned_categories(ref: dict[str, float], cur: dict[str, float]) -> tuple[list, list, list]:
    """Reference categories in order, then `__other__` holding everything the reference lacks."""
    labels = [c for c in ref if c != OTHER]
    ref_freq = [ref[c] for c in labels]
    cur_freq = [cur.get(c, 0.0) for c in labels]
    labels.append(OTHER)
    ref_freq.append(ref.get(OTHER, 0.0))
    cur_freq.append(cur.get(OTHER, 0.0) + sum(v for c, v in cur.items() if c not in ref))
    return labels, ref_freq, cur_freq


def compare_feature(
    name: str,
    reference: dict[str, Any],
    current: dict[str, Any] | None,
    thresholds: DriftThresholds,
) -> FeatureDrift:
    """Compare one feature's reference and current summaries under `thresholds`."""
    kind = reference["type"]
    if current is None:
        return FeatureDrift(
            name, kind, True, math.inf, ["absent from the current data (schema change)"]
        )
    if current["type"] != kind:
        return FeatureDrift(
            name, kind, True, math.inf, [f"type changed from {kind} to {current['type']}"]
        )

    ref_missing = reference.get("missing_rate") or 0.0
    cur_missing = current.get("missing_rate") or 0.0
    result = FeatureDrift(
        feature=name,
        kind=kind,
        drifted=False,
        score=0.0,
        missing_rate_reference=ref_missing,
        missing_rate_current=cur_missing,
        missing_rate_change=cur_missing - ref_missing,
    )
    ratios: dict[str, float] = {
        "missing_rate": abs(cur_missing - ref_missing) / thresholds.missing_rate_change
    }
    both_present = reference.get("count", 0) > 0 and current.get("count", 0) > 0

    if kind == NUMERIC:
        result.mean_reference = reference.get("mean")
        result.mean_current = current.get("mean")
        result.bin_labels = _bin_labels(reference.get("bin_edges", []))
        result.frequencies_reference = list(reference.get("bin_frequencies", []))
        result.frequencies_current = list(current.get("bin_frequencies", []))
        if both_present:
            result.psi = population_stability_index(
                result.frequencies_reference, result.frequencies_current
            )
            w1 = wasserstein_from_quantiles(reference["quantiles"], current["quantiles"])
            result.wasserstein_norm = w1 / max(reference.get("std") or 0.0, WASSERSTEIN_MIN_NORM)
            result.ks_statistic = ks_from_quantiles(reference["quantiles"], current["quantiles"])
            result.ks_p_value = ks_p_value(
                result.ks_statistic, reference["count"], current["count"]
            )
            tests = thresholds.numeric_tests
            if "psi" in tests:
                ratios["psi"] = result.psi / thresholds.psi
            if "wasserstein" in tests:
                ratios["wasserstein"] = result.wasserstein_norm / thresholds.wasserstein
            if "ks" in tests:
                ratios["ks"] = thresholds.ks_p_value / max(result.ks_p_value, 1e-300)
    else:
        labels, ref_freq, cur_freq = _aligned_categories(
            reference.get("frequencies", {}), current.get("frequencies", {})
        )
        result.bin_labels = labels
        result.frequencies_reference = ref_freq
        result.frequencies_current = cur_freq
        if both_present:
            result.psi = population_stability_index(ref_freq, cur_freq)
            result.jensen_shannon = jensen_shannon_distance(ref_freq, cur_freq)
            tests = thresholds.categorical_tests
            if "psi" in tests:
                ratios["psi"] = result.psi / thresholds.psi
            if "jensen_shannon" in tests:
                ratios["jensen_shannon"] = result.jensen_shannon / thresholds.jensen_shannon

    result.score = max(ratios.values())
    result.reasons = [_reason(test, result) for test, ratio in ratios.items() if ratio >= 1]
    result.drifted = bool(result.reasons)
    return result


def _reason(test: str, drift: FeatureDrift) -> str:
    if test == "missing_rate":
        return (
            f"missing rate {drift.missing_rate_reference:.3f} -> {drift.missing_rate_current:.3f}"
        )
    if test == "psi":
        return f"PSI {drift.psi:.3f}"
    if test == "wasserstein":
        return f"normalised Wasserstein {drift.wasserstein_norm:.3f}"
    if test == "ks":
        return f"KS {drift.ks_statistic:.3f} (p={drift.ks_p_value:.2g})"
    return f"Jensen-Shannon {drift.jensen_shannon:.3f}"


# --- dataset-level report -----------------------------------------------------------------


def label_rate_drift(
    reference_rate: float | None,
    reference_rows: int,
    current_rate: float | None,
    current_rows: int,
    thresholds: DriftThresholds,
) -> dict[str, Any] | None:
    """Prior shift of the label: None when either side has no labels."""
    if reference_rate is None or current_rate is None or current_rows == 0:
        return None
    change = current_rate - reference_rate
    if reference_rate > 0:
        relative = abs(change) / reference_rate
    else:
        relative = math.inf if change else 0.0
    p_value = two_proportion_p_value(reference_rate, reference_rows, current_rate, current_rows)
    drifted = relative >= thresholds.label_rate_relative_change and (
        p_value < thresholds.label_rate_p_value
    )
    return {
        "reference_rate": reference_rate,
        "current_rate": current_rate,
        "current_rows": current_rows,
        "absolute_change": change,
        "relative_change": relative if math.isfinite(relative) else None,
        "p_value": p_value,
        "drifted": drifted,
    }


def build_drift_report(
    reference: dict[str, Any],
    current: dict[str, Any],
    thresholds: DriftThresholds = DriftThresholds(),
    *,
    current_label_rate: float | None = None,
    current_label_rows: int = 0,
) -> dict[str, Any]:
    """Compare every reference feature and decide the dataset-level verdict.

    Drift when the share of drifted features >= `thresholds.drift_share`, or any key feature
    drifted, or (if `label_drift_counts`) the label rate drifted.
    """
    ref_features = reference.get("features", {})
    cur_features = current.get("features", {})
    missing_keys = [k for k in thresholds.key_features if k not in ref_features]
    if missing_keys:
        raise KeyError(
            f"key features {missing_keys} are not in the reference profile "
            f"(features: {sorted(ref_features)}); fix the drift report's key_features config"
        )
    drifts = [
        compare_feature(name, ref, cur_features.get(name), thresholds)
        for name, ref in ref_features.items()
    ]
    drifts.sort(key=lambda d: (-d.score, d.feature))
    drifted = [d.feature for d in drifts if d.drifted]
    share = len(drifted) / len(drifts) if drifts else 0.0
    key_drifted = [k for k in thresholds.key_features if k in drifted]
    labels = label_rate_drift(
        reference.get("label_rate"),
        reference.get("rows", 0),
        current_label_rate,
        current_label_rows,
        thresholds,
    )

    reasons = []
    if drifts and share >= thresholds.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(drifts)} features drifted "
            f"(share {share:.2f} >= {thresholds.drift_share})"
        )
    if key_drifted:
        reasons.append(f"key features drifted: {', '.join(key_drifted)}")
    if labels and labels["drifted"] and thresholds.label_drift_counts:
        reasons.append(f"label rate {labels['reference_rate']:.4f} -> {labels['current_rate']:.4f}")

    return {
        "verdict": VERDICT_DRIFT if reasons else VERDICT_NO_DRIFT,
        "reasons": reasons,
        "drift_share": share,
        "n_features": len(drifts),
        "n_drifted": len(drifted),
        "drifted_features": drifted,
        "key_features_drifted": key_drifted,
        "new_features": sorted(set(cur_features) - set(ref_features)),
        "label_drift": labels,
        "reference_rows": reference.get("rows", 0),
        "current_rows": current.get("rows", 0),
        "thresholds": asdict(thresholds),
        "features": [_json_ready(asdict(d)) for d in drifts],
    }


def no_reference_report(reason: str) -> dict[str, Any]:
    return {
        "verdict": VERDICT_NO_REFERENCE,
        "reasons": [reason],
        "drift_share": 0.0,
        "n_features": 0,
        "n_drifted": 0,
        "drifted_features": [],
        "key_features_drifted": [],
        "new_features": [],
        "label_drift": None,
        "features": [],
    }


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    """inf/nan are not JSON: an infinite score (schema change) becomes None."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }


FEATURE_TABLE_SCHEMA = {
    "feature": pl.String,
    "kind": pl.String,
    "drifted": pl.Boolean,
    "score": pl.Float64,
    "reasons": pl.String,
    "psi": pl.Float64,
    "jensen_shannon": pl.Float64,
    "wasserstein_norm": pl.Float64,
    "ks_statistic": pl.Float64,
    "ks_p_value": pl.Float64,
    "missing_rate_reference": pl.Float64,
    "missing_rate_current": pl.Float64,
    "missing_rate_change": pl.Float64,
    "mean_reference": pl.Float64,
    "mean_current": pl.Float64,
}


def feature_table(report: dict[str, Any]) -> pl.DataFrame:
    """One row per feature, worst first: the `features.parquet` of the report."""
    rows = [
        {
            k: ("; ".join(v) if k == "reasons" else v)
            for k, v in f.items()
            if k in FEATURE_TABLE_SCHEMA
        }
        for f in report["features"]
    ]
    return pl.DataFrame(rows, schema=FEATURE_TABLE_SCHEMA)
