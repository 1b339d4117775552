"""`ml/feature_drift_report`: recent gold features against the latest published reference profile.

The report reads only the last few `user_daily_features` partitions and the reference profile
stored with the published training set, never the training set itself, so it stays cheap
enough to run after every gold update. It writes `lake/ml/feature_drift_report/` (report.json,
features.parquet, chart.svg) in one atomic directory swap, and puts the verdict into the
materialization metadata where `drift_sensor` reads it.

(No `from __future__ import annotations` here: Dagster resolves the Config annotation at runtime.)
"""

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
    Config,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from refinery import settings
from refinery.assets.ml.drift.render import (
    distribution_bars_markdown,
    distribution_chart_svg,
    markdown_summary,
    svg_markdown_image,
)
from refinery.assets.ml.drift.report import (
    VERDICT_DRIFT,
    VERDICT_NO_DRIFT,
    DriftThresholds,
    build_drift_report,
    feature_table,
    no_reference_report,
)
from refinery.assets.ml.profile import LABEL_COLUMN, profile_against
from refinery.faults import kill_point
from refinery.resources import LakeResource
from refinery.resources.lake import (
    LakePaths,
    replace_dir_atomic,
    write_parquet_atomic,
)

REPORT_KEY = AssetKey(["ml", "feature_drift_report"])
TRAINING_SET_KEY = AssetKey(["ml", "training_dataset"])
FEATURES_KEY = AssetKey(["gold", "user_daily_features"])
FEATURES_MODEL = "user_daily_features"
EXAMPLES_MODEL = "training_examples"
AS_OF_PREFIX = "as_of_date="
PARTITION_FILE = "data.parquet"
VERDICT_CHECK = "drift_verdict"
FLOAT_DIGITS = 4  # shares and rates in the UI; report.json keeps full precision


class DriftReportConfig(Config):
    """Window and thresholds; defaults and their sources are in `refinery.assets.ml.drift.report`."""

    window: int = Field(
        default_factory=settings.DRIFT_WINDOW_DAYS.get,
        description="latest as-of dates compared with the reference",
    )
    as_of_dates: list[str] = Field(default_factory=list)
    psi: float = 0.25
    jensen_shannon: float = 0.1
    wasserstein: float = 0.1
    missing_rate_change: float = 0.05
    drift_share: float = Field(
        default_factory=settings.DRIFT_SHARE.get,
        description="share of drifted features that makes the dataset verdict drift",
    )
    key_features: list[str] = Field(
        default_factory=lambda: list(settings.DRIFT_KEY_FEATURES.get()),
        description="features any of which drifting makes the verdict drift",
    )
    numeric_tests: list[str] = Field(default_factory=lambda: ["psi", "wasserstein"])
    categorical_tests: list[str] = Field(default_factory=lambda: ["psi", "jensen_shannon"])
    label_drift_counts: bool = True

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(
            psi=self.psi,
            jensen_shannon=self.jensen_shannon,
            wasserstein=self.wasserstein,
            missing_rate_change=self.missing_rate_change,
            drift_share=self.drift_share,
            key_features=tuple(self.key_features),
            numeric_tests=tuple(self.numeric_tests),
            categorical_tests=tuple(self.categorical_tests),
            label_drift_counts=self.label_drift_counts,
        )


def _latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict[str, Any] | None:
    records = instance.fetch_materializations(key, limit=1).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    metadata = materialization.metadata if materialization else {}
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


def reference_outdated(instance: DagsterInstance) -> bool:
    """Whether the latest report compared against an older training set than the latest one.

    The training set's materialization names the version that is latest after it (`version_tag`:
    the new one, or the one that already was when the rebuild published nothing); the report
    names the version it compared against (`reference_version`). A rebuild that publishes
    nothing leaves the two equal, so it is no news to the report.
    """
    training_set = _latest_metadata(instance, TRAINING_SET_KEY)
    if not training_set or not training_set.get("version_tag"):
        return False
    report = _latest_metadata(instance, REPORT_KEY)
    return report is None or report.get("reference_version") != str(training_set["version_tag"])


class ReferenceOutdated(AutomationCondition):
    """True while the report's reference is older than the latest training-set version.

    A state, read from the two latest materializations (no cursor of its own): a reset sensor
    re-reads the same state.
    """

    @property
    def name(self) -> str:
        return "reference_outdated"

    def evaluate(self, context: AutomationContext) -> AutomationResult:
        outdated = reference_outdated(context.asset_graph_view.instance)
        true_subset = context.candidate_subset if outdated else context.get_empty_subset()
        return AutomationResult(context, true_subset)


def report_automation_condition() -> AutomationCondition:
    """Refresh after each new gold day and each newly published training-set version.

    Not eager(): that waits until no upstream partition is missing, which a daily lake never
    reaches. Not any_deps_updated() on the training set either: a rebuild that published
    nothing would refresh the report, whose unchanged drift verdict used to request the same
    rebuild again, once a minute, forever. The training set counts only when it moved the
    latest version past the report's reference (newly_true: once per new version).
    """
    new_gold = AutomationCondition.any_deps_updated().ignore(
        AssetSelection.assets(TRAINING_SET_KEY)
    )
    new_version = ReferenceOutdated().newly_true()
    return (
        (new_gold | new_version).since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    )


@dataclass
class DriftReportResult:
    report: dict[str, Any]
    reference_version: str | None
    current_window: list[str]
    report_dir: Path


def as_of_dates(lake: LakePaths, model: str) -> list[str]:
    """As-of dates with a written `data.parquet`, oldest first."""
    base = lake.gold_dir(model)
    if not base.exists():
        return []
    return sorted(
        p.name.removeprefix(AS_OF_PREFIX)
        for p in base.iterdir()
        if p.is_dir() and p.name.startswith(AS_OF_PREFIX) and (p / PARTITION_FILE).exists()
    )


def select_window(available: list[str], window: int, explicit: list[str]) -> list[str]:
    """The explicit dates (each must exist) or the latest `window` available ones."""
    if explicit:
        absent = sorted(set(explicit) - set(available))
        if absent:
            raise FileNotFoundError(
                f"as_of_dates {absent} have no gold/{FEATURES_MODEL} partition "
                f"(available: {available[:3]}...{available[-3:]}); materialize them or pick "
                "dates that exist"
            )
        return sorted(explicit)
    if window < 1:
        raise ValueError(f"window must be >= 1 as-of dates, got {window}")
    return available[-window:]


def read_window(lake: LakePaths, model: str, dates: list[str], columns: list[str]) -> pl.DataFrame:
    """The wanted columns of the given partitions; a column a partition lacks comes back null."""
    frames = []
    for as_of in dates:
        path = lake.gold_dir(model) / f"{AS_OF_PREFIX}{as_of}" / PARTITION_FILE
        scan = pl.scan_parquet(path, hive_partitioning=False)
        present = [c for c in columns if c in scan.collect_schema().names()]
        frames.append(scan.select(present))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed").collect()


def load_reference(registry: Path) -> tuple[str | None, dict[str, Any] | None, str]:
    """(version, profile, why-not) of the latest published training set."""
    from refinery.resources.registry import latest_tag, read_card

    version = latest_tag(Path(registry))
    if version is None:
        return None, None, f"no training set has been published to the registry {registry} yet"
    profile = read_card(Path(registry), version, "profile.json")
    if profile is None:
        return version, None, f"training set version {version} has no reference profile"
    return version, profile, ""


def compute_drift_report(
    lake: LakePaths,
    config: DriftReportConfig,
    reference: tuple[str, dict[str, Any]] | None = None,
) -> DriftReportResult:
    """Build and write the report; the pure statistics, verdicts and rendering live in
    `refinery.assets.ml.drift`.

    `reference` is (version, profile); by default the latest published version's profile.
    """
    if reference is None:
        version, profile, why_not = load_reference(lake.registry)
    else:
        (version, profile), why_not = reference, ""
    window = select_window(as_of_dates(lake, FEATURES_MODEL), config.window, config.as_of_dates)
    if profile is None:
        report = no_reference_report(why_not)
    elif not window:
        report = no_reference_report(
            f"no gold/{FEATURES_MODEL} partitions under {lake.gold_dir(FEATURES_MODEL)}: "
            "materialize gold before the drift report"
        )
        report["verdict"] = "no_data"
    else:
        features = list(profile["features"])
        current = profile_against(read_window(lake, FEATURES_MODEL, window, features), profile)
        label_rate, label_rows = recent_label_rate(lake, config.window)
        report = build_drift_report(
            profile,
            current,
            config.thresholds(),
            current_label_rate=label_rate,
            current_label_rows=label_rows,
        )
    report["reference_version"] = version
    report["current_window"] = window
    examples = as_of_dates(lake, EXAMPLES_MODEL)
    report["examples_through"] = examples[-1] if examples else None
    report_dir = lake.lake / "ml" / "feature_drift_report"
    kill_point("drift_report.before_write")
    write_report(report, report_dir)
    return DriftReportResult(report, version, window, report_dir)


def recent_label_rate(lake: LakePaths, window: int) -> tuple[float | None, int]:
    """Positive rate over the latest `window` labelled as-of dates (labels lag features)."""
    dates = as_of_dates(lake, EXAMPLES_MODEL)[-window:]
    if not dates:
        return None, 0
    labels = read_window(lake, EXAMPLES_MODEL, dates, [LABEL_COLUMN])
    if LABEL_COLUMN not in labels.columns or labels.height == 0:
        return None, 0
    column = labels[LABEL_COLUMN].drop_nulls().cast(pl.Float64)
    return (float(column.mean()) if column.len() else None), column.len()


def write_report(report: dict[str, Any], report_dir: Path) -> None:
    """report.json + features.parquet + chart.svg, swapped in as one directory."""
    staging = report_dir.with_name(f".{report_dir.name}.{uuid.uuid4().hex}.staging")
    staging.mkdir(parents=True)
    (staging / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_parquet_atomic(feature_table(report), staging / "features.parquet")
    (staging / "chart.svg").write_text(distribution_chart_svg(report))
    replace_dir_atomic(staging, report_dir)


def report_metadata(result: DriftReportResult) -> dict[str, Any]:
    report = result.report
    window = result.current_window
    chart = distribution_chart_svg(report) if report["features"] else ""
    labels = report.get("label_drift") or {}
    metadata: dict[str, Any] = {
        "verdict": MetadataValue.text(report["verdict"]),
        "drift_share": MetadataValue.float(round(float(report["drift_share"]), FLOAT_DIGITS)),
        "n_drifted": MetadataValue.int(report["n_drifted"]),
        "n_features": MetadataValue.int(report["n_features"]),
        "reference_version": MetadataValue.text(result.reference_version or "none"),
        "current_window": MetadataValue.text(f"{window[0]}..{window[-1]}" if window else "none"),
        # the newest gold/training_examples as-of date: the labelled data a rebuild would use
        "examples_through": MetadataValue.text(report.get("examples_through") or "none"),
        "current_rows": MetadataValue.int(int(report.get("current_rows", 0))),
        "drifted_features": MetadataValue.json(report["drifted_features"]),
        "reasons": MetadataValue.md("\n".join(f"- {r}" for r in report["reasons"]) or "–"),
        "top_drifted_features": MetadataValue.md(markdown_summary(report)),
        "report_path": MetadataValue.path(str(result.report_dir / "report.json")),
    }
    if chart:
        metadata["distribution_chart"] = MetadataValue.md(
            svg_markdown_image(chart) + "\n\n" + distribution_bars_markdown(report)
        )
    if labels:
        metadata["label_rate_reference"] = MetadataValue.float(
            round(float(labels["reference_rate"]), FLOAT_DIGITS)
        )
        metadata["label_rate_current"] = MetadataValue.float(
            round(float(labels["current_rate"]), FLOAT_DIGITS)
        )
        metadata["label_drift"] = MetadataValue.bool(bool(labels["drifted"]))
    return metadata


def verdict_check(result: DriftReportResult) -> AssetCheckResult:
    """WARN when the verdict is drift (drift_sensor rebuilds the training set); passes on
    no_drift, and on no_reference / no_data (nothing to compare yet: the description says so)."""
    report = result.report
    verdict = report["verdict"]
    drifted = verdict == VERDICT_DRIFT
    share = round(float(report["drift_share"]), FLOAT_DIGITS)
    if drifted:
        features = ", ".join(report["drifted_features"][:8]) or "the label rate"
        text = (
            f"drift against {result.reference_version}: {report['n_drifted']}/"
            f"{report['n_features']} features (share {share}); {features}"
        )
    elif verdict == VERDICT_NO_DRIFT:
        text = f"no drift against {result.reference_version} (share {share})"
    else:
        text = f"verdict {verdict}: " + ("; ".join(report.get("reasons") or []) or "no comparison")
    return AssetCheckResult(
        asset_key=REPORT_KEY,
        check_name=VERDICT_CHECK,
        passed=not drifted,
        severity=AssetCheckSeverity.WARN,
        description=text[:1000],
        metadata={
            "verdict": verdict,
            "drift_share": share,
            "n_drifted": int(report["n_drifted"]),
            "reference_version": result.reference_version or "none",
        },
    )


@asset(
    key=REPORT_KEY,
    group_name="ml",
    deps=[FEATURES_KEY, TRAINING_SET_KEY],
    kinds={"polars"},
    automation_condition=report_automation_condition(),
    check_specs=[
        AssetCheckSpec(
            VERDICT_CHECK,
            asset=REPORT_KEY,
            description="Warns when the verdict is drift (features moved away from the latest "
            "training set's reference profile); drift_sensor then requests a rebuild.",
        )
    ],
    description=(
        "Recent feature distribution (latest as-of dates of gold/user_daily_features) against "
        "the reference profile of the latest published training set: per-feature PSI, "
        "Jensen-Shannon, Wasserstein, missing-rate change, label-rate drift and a verdict."
    ),
)
def feature_drift_report(
    context: AssetExecutionContext, config: DriftReportConfig, lake: LakeResource
) -> MaterializeResult:
    result = compute_drift_report(lake.paths, config)
    context.log.info(
        f"drift verdict {result.report['verdict']} "
        f"({result.report['n_drifted']}/{result.report['n_features']} features) "
        f"against reference {result.reference_version} over {result.current_window}"
    )
    return MaterializeResult(
        metadata=report_metadata(result), check_results=[verdict_check(result)]
    )
