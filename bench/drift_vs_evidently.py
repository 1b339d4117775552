"""refinery's drift report against Evidently's DataDriftPreset on the same frames.

The reference is the train split of the published training set (the frame refinery's reference
profile was built from), the current frame the `user_daily_features` window the platform's
report compared. Evidently runs in bench/.venv-evidently as a subprocess on Parquet written
here. Agreement is per feature: refinery's verdict under the same statistic and threshold as
each Evidently configuration, and refinery's default verdict (any of PSI, Wasserstein or JS,
plus a missing-rate change) against Evidently's default-like configuration.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import polars as pl

from refinery.assets.ml.drift.report import DriftThresholds, build_drift_report
from refinery.assets.ml.drift_report import FEATURES_MODEL, read_window
from refinery.assets.ml.profile import profile_against
from refinery.resources.lake import LakePaths

BENCH_DIR = Path(__file__).resolve().parent
PEER_PYTHON = BENCH_DIR / ".venv-evidently" / "bin" / "python"

# refinery's tests that mirror each Evidently configuration of bench/evidently_drift.py
MIRRORED = {
    "default_like": DriftThresholds(
        numeric_tests=("wasserstein",), categorical_tests=("jensen_shannon",)
    ),
    "psi": DriftThresholds(numeric_tests=("psi",), categorical_tests=("psi",)),
}


def refinery_verdicts(lake: LakePaths, profile: dict, window: list[str]) -> dict[str, dict]:
    """Per-feature verdicts of refinery's statistics, timed without Dagster or file writes."""
    features = list(profile["features"])
    started = time.perf_counter()
    current = profile_against(read_window(lake, FEATURES_MODEL, window, features), profile)
    profile_seconds = time.perf_counter() - started
    out = {}
    for name, thresholds in MIRRORED.items():
        report = build_drift_report(profile, current, thresholds)
        # the missing-rate test is always on in refinery and has no Evidently counterpart
        out[name] = {
            f["feature"]: any(not r.startswith("missing rate") for r in f["reasons"])
            for f in report["features"]
        }
    out["profile_seconds"] = profile_seconds
    return out


def compare(lake_root: Path, work: Path) -> dict:
    lake = LakePaths(lake_root)
    training_dir = lake.lake / "ml" / "training_dataset"
    report = json.loads((lake.lake / "ml" / "feature_drift_report" / "report.json").read_text())
    profile = json.loads((training_dir / "profile.json").read_text())
    features = list(profile["features"])
    window = report["current_window"]

    reference = pl.read_parquet(training_dir / "train.parquet", columns=features)
    current = read_window(lake, FEATURES_MODEL, window, features)
    work.mkdir(parents=True, exist_ok=True)
    reference.write_parquet(work / "reference.parquet")
    current.write_parquet(work / "current.parquet")
    kinds = {
        "numeric": [c for c in features if profile["features"][c]["type"] == "numeric"],
        "categorical": [c for c in features if profile["features"][c]["type"] != "numeric"],
    }
    (work / "columns.json").write_text(json.dumps(kinds))
    subprocess.run(
        [
            str(PEER_PYTHON), str(BENCH_DIR / "evidently_drift.py"),
            "--reference", str(work / "reference.parquet"),
            "--current", str(work / "current.parquet"),
            "--columns", str(work / "columns.json"),
            "--out", str(work / "evidently.json"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    evidently = json.loads((work / "evidently.json").read_text())
    mirrored = refinery_verdicts(lake, profile, window)
    default = {f["feature"]: bool(f["drifted"]) for f in report["features"]}

    def agreement(ours: dict[str, bool], theirs: dict[str, dict]) -> dict:
        shared = sorted(set(ours) & set(theirs))
        disagree = [f for f in shared if ours[f] != theirs[f]["drifted"]]
        return {
            "features": len(shared),
            "agree": len(shared) - len(disagree),
            "agreement": (len(shared) - len(disagree)) / len(shared) if shared else None,
            "disagree": {
                f: {"refinery": ours[f], "evidently_score": round(theirs[f]["score"], 4)}
                for f in disagree
            },
            "refinery_drifted": sum(ours[f] for f in shared),
            "evidently_drifted": sum(theirs[f]["drifted"] for f in shared),
        }

    configs = evidently["configs"]
    return {
        "reference_rows": reference.height,
        "current_rows": current.height,
        "window": window,
        "features": len(features),
        "evidently_import_seconds": evidently["import_seconds"],
        "evidently_seconds": {name: c["seconds"] for name, c in configs.items()},
        "refinery_profile_and_compare_seconds": round(mirrored["profile_seconds"], 3),
        "agreement": {
            "default_vs_default_like": agreement(default, configs["default_like"]["features"]),
            "same_tests_wasserstein_js": agreement(
                mirrored["default_like"], configs["default_like"]["features"]
            ),
            "same_tests_psi": agreement(mirrored["psi"], configs["psi"]["features"]),
        },
        "refinery_verdict": report["verdict"],
    }
