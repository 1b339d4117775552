"""Per-feature drift scores of a lake's latest as-of windows against a published training set:
the numbers to choose `REFINERY_DRIFT_WINDOW_DAYS` and `REFINERY_DRIFT_KEY_FEATURES` by.

For each window of `--window` consecutive as-of dates among the last `--dates`, the features'
scores (1.0 = at the threshold: drifted) and the share of drifted features, against the
reference profile of the registry's checked-out training set (or `--version`). Reads only the
lake; writes nothing.

    uv run python -m bench.drift_scores --data data --window 2 --features spend_1d,spend_7d
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from refinery.assets.ml.drift.report import DriftThresholds, compare_feature
from refinery.assets.ml.drift_report import FEATURES_MODEL, as_of_dates, read_window
from refinery.assets.ml.profile import profile_against
from refinery.datasets import read_profile
from refinery.resources.lake import LakePaths


def window_scores(
    lake: LakePaths, profile: dict, window: int, last: int, features: list[str]
) -> pl.DataFrame:
    dates = as_of_dates(lake, FEATURES_MODEL)[-last:]
    names = list(profile["features"])
    rows = []
    for end in range(window, len(dates) + 1):
        span = dates[end - window : end]
        current = profile_against(read_window(lake, FEATURES_MODEL, span, names), profile)
        drifts = {
            name: compare_feature(
                name, profile["features"][name], current["features"][name], DriftThresholds()
            )
            for name in names
            if name in current["features"]
        }
        row = {"window": f"{span[0]}..{span[-1]}"}
        row |= {name: round(drifts[name].score, 2) for name in features if name in drifts}
        row["drift_share"] = round(sum(d.drifted for d in drifts.values()) / len(drifts), 3)
        rows.append(row)
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the data root")
    parser.add_argument("--version", default=None, help="training-set version (default latest)")
    parser.add_argument("--window", type=int, default=2, help="as-of dates per window")
    parser.add_argument("--dates", type=int, default=10, help="latest as-of dates to cover")
    parser.add_argument(
        "--features", default="spend_1d,spend_7d,share_mobile_30d", help="features to show"
    )
    args = parser.parse_args()
    lake = LakePaths(args.data.resolve())
    profile = read_profile(args.version, registry=lake.registry)
    if profile is None:
        raise SystemExit(f"no published training-set version in {lake.registry}")
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_cols(30)
    print(window_scores(lake, profile, args.window, args.dates, args.features.split(",")))


if __name__ == "__main__":
    main()
