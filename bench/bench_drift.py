"""Time the drift report on 1M feature rows x 30 features (7 as-of partitions of gold Parquet).

    uv run python bench/bench_drift.py [--rows 1000000] [--numeric 24] [--categorical 6]

Prints the time to profile the reference (what the training-set asset pays once per version)
and the time of one drift report: read the window's Parquet, profile it on the reference bins,
compare, write report.json / features.parquet / chart.svg.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from refinery.assets.ml.drift_report import DriftReportConfig, compute_drift_report
from refinery.assets.ml.profile import build_profile
from refinery.resources.lake import LakePaths, write_parquet_atomic

DAYS = 7


def synthetic_features(
    rows: int, numeric: int, categorical: int, seed: int, shift: float
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray | list] = {}
    for i in range(numeric):
        if i % 3 == 0:
            values = rng.poisson(2.0 + shift, rows).astype(np.float64)
        elif i % 3 == 1:
            values = rng.gamma(2.0, 10.0 * (1 + shift), rows)
        else:
            values = rng.normal(shift, 1.0, rows)
        values[rng.random(rows) < 0.05] = np.nan
        columns[f"num_{i:02d}"] = values
    for j in range(categorical):
        k = 5 + 40 * j
        weights = rng.dirichlet(np.ones(k))
        columns[f"cat_{j}"] = rng.choice([f"v{c}" for c in range(k)], rows, p=weights)
    return pl.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=24)
    parser.add_argument("--categorical", type=int, default=6)
    args = parser.parse_args()

    reference_frame = synthetic_features(args.rows, args.numeric, args.categorical, 0, 0.0)
    features = reference_frame.columns
    started = time.perf_counter()
    reference = build_profile(reference_frame, features)
    profile_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        lake = LakePaths(Path(tmp))
        current = synthetic_features(args.rows, args.numeric, args.categorical, 1, 0.2)
        per_day = args.rows // DAYS
        for d in range(DAYS):
            part = current.slice(d * per_day, per_day if d < DAYS - 1 else None)
            path = lake.gold_dir("user_daily_features") / f"as_of_date=2025-03-0{d + 1}"
            write_parquet_atomic(part, path / "data.parquet")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            result = compute_drift_report(lake, DriftReportConfig(), reference=("bench", reference))
            timings.append(time.perf_counter() - started)

    print(
        f"rows={args.rows:,} features={len(features)} "
        f"({args.numeric} numeric, {args.categorical} categorical), {DAYS} partitions"
    )
    print(f"reference profile (build_profile): {profile_seconds:.2f} s")
    print(
        f"drift report (read + profile + compare + write): best {min(timings):.2f} s, "
        f"runs {', '.join(f'{t:.2f}' for t in timings)}"
    )
    print(
        f"verdict={result.report['verdict']} drifted={result.report['n_drifted']}"
        f"/{result.report['n_features']}"
    )


if __name__ == "__main__":
    main()
