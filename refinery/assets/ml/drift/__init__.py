"""Feature drift, pure: profiles (`refinery.assets.ml.profile`) in, a report dict out.

- `statistics`: PSI, Jensen-Shannon, Wasserstein-1, KS (and p-values) between two distributions;
- `report`: the thresholds (`DriftThresholds`, with their sources), the per-feature verdicts, the
  dataset verdict and the label rate (`build_drift_report`);
- `render`: the report as markdown and an SVG chart.

The Dagster asset that reads gold, calls these and writes the report is
`refinery.assets.ml.drift_report` (feature_drift_report).
"""
