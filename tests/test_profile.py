"""The reference profile: deterministic, JSON-ready, and numerically what it claims to be."""

import json

import numpy as np
import polars as pl
import pytest

from refinery.assets.ml.profile import OTHER, build_profile, profile_against


def _frame(seed: int = 0, n: int = 2_000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 10.0, n)
    amount[rng.random(n) < 0.1] = np.nan
    return pl.DataFrame(
        {
            "amount": amount,
            "n_views": rng.poisson(0.4, n).astype(np.int64),
            "opt_in": rng.random(n) < 0.3,
            "plan": rng.choice(["free", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
            "country": [f"C{i}" for i in rng.integers(0, 80, n)],
            "label": (rng.random(n) < 0.2).astype(np.int8),
        }
    )


FEATURES = ["amount", "n_views", "opt_in", "plan", "country"]


def test_profile_is_deterministic_and_json_serialisable():
    frame = _frame()
    first = build_profile(frame, FEATURES)
    again = build_profile(frame.sample(fraction=1.0, shuffle=True, seed=3), FEATURES)
    assert json.loads(json.dumps(first, allow_nan=False)) == first
    assert first == again  # row order does not matter


def test_numeric_summary_matches_numpy():
    frame = _frame()
    profile = build_profile(frame, FEATURES)
    amount = profile["features"]["amount"]
    values = frame["amount"].to_numpy()
    finite = values[np.isfinite(values)]
    assert amount["type"] == "numeric"
    assert amount["missing_rate"] == pytest.approx(1 - finite.size / values.size)
    assert amount["mean"] == pytest.approx(finite.mean())
    assert amount["std"] == pytest.approx(finite.std(ddof=1))
    assert amount["quantiles"] == pytest.approx(np.quantile(finite, np.linspace(0, 1, 101)))
    edges = np.asarray(amount["bin_edges"])
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    assert amount["bin_frequencies"] == pytest.approx(counts / finite.size, abs=1e-9)
    assert len(edges) == 9 and sum(amount["bin_frequencies"]) == pytest.approx(1.0)


def test_discrete_features_get_one_bin_per_frequent_value():
    profile = build_profile(_frame(), FEATURES)
    views = profile["features"]["n_views"]
    assert views["bin_edges"] == sorted(set(views["bin_edges"]))
    assert len(views["bin_edges"]) < 9
    opt_in = profile["features"]["opt_in"]
    assert opt_in["type"] == "numeric" and opt_in["bin_edges"] == [0.0, 1.0]
    assert opt_in["bin_frequencies"][1] == pytest.approx(opt_in["mean"])


def test_categorical_top_k_and_other_bucket():
    frame = _frame()
    profile = build_profile(frame, FEATURES, top_k=10)
    country = profile["features"]["country"]
    assert country["type"] == "categorical" and len(country["frequencies"]) == 11
    counts = frame["country"].value_counts(sort=True)
    kept = set(list(country["frequencies"])[:10])
    expected_other = 1 - counts.filter(pl.col("country").is_in(list(kept)))["count"].sum() / 2000
    assert country["frequencies"][OTHER] == pytest.approx(expected_other)
    assert sum(country["frequencies"].values()) == pytest.approx(1.0)
    assert profile["label_rate"] == pytest.approx(frame["label"].mean())


def test_profile_against_uses_reference_bins_and_maps_unseen_categories_to_other():
    reference = build_profile(_frame(0), FEATURES)
    current_frame = _frame(1).with_columns(plan=pl.lit("enterprise"))
    current = profile_against(current_frame, reference)
    assert (
        current["features"]["amount"]["bin_edges"] == reference["features"]["amount"]["bin_edges"]
    )
    plan = current["features"]["plan"]["frequencies"]
    assert plan[OTHER] == 1.0 and plan["free"] == 0.0


def test_unsupported_dtype_and_absent_column_say_what_to_do():
    frame = _frame().with_columns(day=pl.lit(None, dtype=pl.Date))
    with pytest.raises(TypeError, match="cast the column"):
        build_profile(frame, ["day"])
    with pytest.raises(KeyError, match="not in the frame"):
        build_profile(frame, ["nope"])
