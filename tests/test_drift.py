"""Drift statistics against hand-computed values and scipy, and the alarms they raise."""

import json
import math

import numpy as np
import polars as pl
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize
from scipy import stats
from scipy.spatial.distance import jensenshannon

from refinery.assets.ml.drift.report import DriftThresholds, build_drift_report, feature_table
from refinery.assets.ml.drift.statistics import (
    jensen_shannon_distance,
    ks_from_quantiles,
    ks_p_value,
    population_stability_index,
    wasserstein_from_quantiles,
)
from refinery.assets.ml.drift_report import (
    DriftReportConfig,
    compute_drift_report,
    feature_drift_report,
    verdict_check,
)
from refinery.assets.ml.profile import build_profile, profile_against
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths, write_parquet_atomic

FEATURES = ["spend_7d", "n_events_7d", "plan", "device"]


def make_features(seed: int, n: int = 4_000, **shift) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.normal(50 + shift.get("mean", 0.0), 10 * shift.get("scale", 1.0), n)
    spend[rng.random(n) < shift.get("missing", 0.05)] = np.nan
    plan_p = shift.get("plan_p", [0.6, 0.3, 0.1])
    return pl.DataFrame(
        {
            "spend_7d": spend,
            "n_events_7d": rng.poisson(3.0, n).astype(np.int64),
            "plan": rng.choice(["free", "plus", "pro"], n, p=plan_p),
            "device": rng.choice(["web", "ios", "android"], n, p=[0.5, 0.3, 0.2]),
            "label": (rng.random(n) < shift.get("label", 0.2)).astype(np.int8),
        }
    )


def report_for(reference: pl.DataFrame, current: pl.DataFrame, **kw) -> dict:
    ref = build_profile(reference, FEATURES)
    cur = profile_against(current, ref)
    return build_drift_report(
        ref,
        cur,
        DriftThresholds(**kw),
        current_label_rate=float(current["label"].mean()),
        current_label_rows=current.height,
    )


def by_feature(report: dict) -> dict:
    return {f["feature"]: f for f in report["features"]}


# --- statistics ---------------------------------------------------------------------------


def test_psi_by_hand():
    expected = (0.6 - 0.5) * math.log(0.6 / 0.5) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.6, 0.4]) == pytest.approx(expected)
    assert population_stability_index([10, 30], [1, 3]) == pytest.approx(0.0)  # counts normalised
    # An empty bin counts as 1e-4: finite, and large when mass moves into it.
    psi = population_stability_index([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    assert math.isfinite(psi) and psi > 1.0


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(7)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        p[0] = 0  # a category the reference never saw
        assert jensen_shannon_distance(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-12)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))


def test_wasserstein_and_ks_from_quantiles_match_scipy_on_samples():
    rng = np.random.default_rng(11)
    a = rng.normal(0, 1, 20_000)
    b = rng.normal(0.3, 1.4, 8_000)
    grid = np.linspace(0, 1, 101)
    qa, qb = np.quantile(a, grid), np.quantile(b, grid)
    assert wasserstein_from_quantiles(qa, qb) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=0.05
    )
    assert ks_from_quantiles(qa, qb) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.015)
    assert wasserstein_from_quantiles(qa, qa) == 0.0


def test_ks_p_value_matches_scipy_asymptotic():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=3_000), rng.normal(0.08, 1, size=2_000)
    exact = stats.ks_2samp(a, b, method="asymp")
    assert ks_p_value(exact.statistic, a.size, b.size) == pytest.approx(exact.pvalue, rel=0.05)
    assert ks_p_value(0.0, 100, 100) == 1.0


# --- alarms -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_no_false_alarm_on_the_same_distribution(seed):
    report = report_for(make_features(seed), make_features(seed + 100))
    assert report["verdict"] == "no_drift", report["reasons"]
    assert report["drifted_features"] == []
    assert not report["label_drift"]["drifted"]


@pytest.mark.parametrize(
    ("shift", "feature", "statistic"),
    [
        ({"mean": 3.0}, "spend_7d", "wasserstein_norm"),
        ({"scale": 1.8}, "spend_7d", "wasserstein_norm"),
        ({"plan_p": [0.3, 0.3, 0.4]}, "plan", "jensen_shannon"),
        ({"missing": 0.25}, "spend_7d", "missing_rate_change"),
    ],
)
def test_each_injected_shift_raises_an_alarm_on_its_feature(shift, feature, statistic):
    report = report_for(make_features(1), make_features(2, **shift), key_features=(feature,))
    drift = by_feature(report)
    assert drift[feature]["drifted"], drift[feature]
    assert [f for f in report["drifted_features"] if f != feature] == []
    assert report["verdict"] == "drift" and report["key_features_drifted"] == [feature]
    assert report["features"][0]["feature"] == feature  # worst first
    assert drift[feature][statistic] is not None


def test_one_drifted_feature_of_four_is_not_dataset_drift_without_key_features():
    report = report_for(make_features(1), make_features(2, mean=3.0))
    assert report["drift_share"] == pytest.approx(0.25)
    assert report["verdict"] == "no_drift"


def test_label_rate_shift_is_drift():
    report = report_for(make_features(1), make_features(2, label=0.3))
    assert report["label_drift"]["drifted"] and report["drifted_features"] == []
    assert report["verdict"] == "drift" and "label rate" in report["reasons"][0]


def test_schema_change_and_unseen_categories():
    reference = make_features(1)
    current = make_features(2).drop("device").with_columns(plan=pl.lit("enterprise"))
    drift = by_feature(report_for(reference, current))
    assert drift["device"]["drifted"] and "absent" in drift["device"]["reasons"][0]
    assert drift["plan"]["drifted"] and math.isfinite(drift["plan"]["psi"])
    assert drift["plan"]["frequencies_current"][-1] == 1.0  # all in __other__


def test_report_is_json_and_feature_table_is_typed():
    report = report_for(make_features(1), make_features(2).drop("device"))
    json.dumps(report, allow_nan=False)
    table = feature_table(report)
    assert table.height == 4 and table.schema["psi"] == pl.Float64


# --- the asset on real Parquet --------------------------------------------------------------


def write_gold(lake: LakePaths, model: str, days: list[str], seed: int, **shift) -> None:
    for i, day in enumerate(days):
        frame = make_features(seed + i, n=1_000, **shift).with_columns(
            user_id=pl.format("u{}", pl.int_range(pl.len())),
            as_of_date=pl.lit(day).str.to_date(),
        )
        if model == "user_daily_features":
            frame = frame.drop("label")
        write_parquet_atomic(frame, lake.gold_dir(model) / f"as_of_date={day}" / "data.parquet")


DAYS = [f"2025-03-{d:02d}" for d in range(1, 11)]


def test_report_on_gold_parquet_with_given_reference(tmp_path):
    lake = LakePaths(tmp_path)
    write_gold(lake, "user_daily_features", DAYS[:3], seed=0)
    write_gold(lake, "user_daily_features", DAYS[3:], seed=50, mean=4.0, plan_p=[0.2, 0.3, 0.5])
    reference = build_profile(make_features(99, n=10_000), FEATURES)
    config = DriftReportConfig(window=7)
    result = compute_drift_report(lake, config, reference=("training_set@v1.0.0", reference))
    assert result.current_window == DAYS[3:]
    assert result.report["verdict"] == "drift"
    assert set(result.report["drifted_features"]) == {"spend_7d", "plan"}
    on_disk = json.loads((result.report_dir / "report.json").read_text())
    assert on_disk["verdict"] == "drift" and on_disk["reference_version"] == "training_set@v1.0.0"
    assert pl.read_parquet(result.report_dir / "features.parquet").height == 4
    assert (result.report_dir / "chart.svg").read_text().startswith("<svg")

    calm = compute_drift_report(
        lake, DriftReportConfig(as_of_dates=DAYS[:3]), reference=("v1", reference)
    )
    assert calm.report["verdict"] == "no_drift" and calm.current_window == DAYS[:3]

    # the drift_verdict check: WARN on drift, naming the features; passes when calm
    drifted = verdict_check(result)
    assert not drifted.passed and drifted.severity == AssetCheckSeverity.WARN
    assert "drift against training_set@v1.0.0: 2/4 features" in drifted.description
    assert "spend_7d" in drifted.description and "plan" in drifted.description
    assert drifted.metadata["drift_share"].value == 0.5
    passed = verdict_check(calm)
    assert passed.passed and "no drift against v1" in passed.description


def test_asset_materializes_no_reference_without_a_published_version(tmp_path, monkeypatch):
    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path / "elsewhere"))  # the resource decides
    write_gold(LakePaths(tmp_path), "user_daily_features", DAYS, seed=0)
    result = materialize(
        [feature_drift_report],
        instance=DagsterInstance.ephemeral(),
        resources={"lake": LakeResource(data_dir=str(tmp_path))},
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["verdict"].value == "no_reference"
    assert "no training set has been published" in metadata["reasons"].value
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "drift_verdict" and check.passed  # nothing to compare: no alarm
    assert "verdict no_reference: no training set has been published" in check.description
    report = json.loads((tmp_path / "lake/ml/feature_drift_report/report.json").read_text())
    assert report["verdict"] == "no_reference"


def test_explicit_window_dates_must_exist(tmp_path):
    lake = LakePaths(tmp_path)
    write_gold(lake, "user_daily_features", DAYS[:2], seed=0)
    reference = build_profile(make_features(99), FEATURES)
    with pytest.raises(FileNotFoundError, match="2025-04-01"):
        compute_drift_report(
            lake, DriftReportConfig(as_of_dates=["2025-04-01"]), reference=("v1", reference)
        )
