"""Evidently's DataDriftPreset on the reference and current frames refinery's drift report sees.

    bench/.venv-evidently/bin/python bench/evidently_drift.py --reference R.parquet
        --current C.parquet --columns columns.json --out result.json

Runs in its own environment (Evidently 0.7 does not import with pandas 3). `columns.json` says
which features are numeric and which categorical (refinery's rule: String = categorical), so
Evidently does not guess. One Report per configuration, each configured to one statistic of
refinery's drift report at refinery's threshold:
- `default_like`: Wasserstein (normalised by the reference std) >= 0.1 for numeric features and
  Jensen-Shannon distance >= 0.1 for categorical ones: what DataDriftPreset picks by itself on
  more than 1000 rows, and two of refinery's default tests;
- `psi`: PSI >= 0.25 for every feature (Evidently bins numbers its own way).
The output holds, per configuration, the seconds of `Report.run` and each feature's score and
verdict (drift when score >= threshold: all three are distances).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CONFIGS = {
    "default_like": {
        "num_method": "wasserstein",
        "num_threshold": 0.1,
        "cat_method": "jensenshannon",
        "cat_threshold": 0.1,
    },
    "psi": {"method": "psi", "threshold": 0.25},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--current", type=Path, required=True)
    parser.add_argument("--columns", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_seconds = time.perf_counter() - started
    kinds = json.loads(args.columns.read_text())
    numeric, categorical = kinds["numeric"], kinds["categorical"]
    columns = numeric + categorical
    results: dict = {"import_seconds": round(import_seconds, 3), "configs": {}}
    for name, options in CONFIGS.items():
        started = time.perf_counter()
        reference = pd.read_parquet(args.reference, columns=columns)
        current = pd.read_parquet(args.current, columns=columns)
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        snapshot = Report([DataDriftPreset(columns=columns, **options)]).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        seconds = time.perf_counter() - started
        features = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric.get("config", {})
            column = config.get("column")
            if config.get("type", "").endswith("ValueDrift") and column in columns:
                threshold = config.get("threshold")
                score = float(metric["value"])
                features[column] = {
                    "method": config.get("method"),
                    "threshold": threshold,
                    "score": score,
                    "drifted": bool(threshold is not None and score >= threshold),
                }
        results["configs"][name] = {
            "options": options,
            "seconds": round(seconds, 3),
            "rows_reference": len(reference),
            "rows_current": len(current),
            "features": features,
        }
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
