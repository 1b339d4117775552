"""The code location per concern: each module builds the `Definitions` of one concern (its
assets and checks, and the jobs beside the sensors that request them); `refinery.definitions`
merges them and applies the catalog (`refinery.defs.catalog`) to every asset.

| module | assets | jobs / sensors |
|---|---|---|
| `ingest` | bronze/*, silver/* | ingest_job / landing_sensor |
| `gold` | gold/* (dbt) + Pandera checks | (run by ingest_job, or a backfill) |
| `ml` | ml/training_dataset, ml/feature_drift_report | training_set_job / drift_sensor, drift_report_job / drift_report_automation |
| `online` | online/user_features | (run by ingest_job) |

Importing these modules defines objects and nothing else (no run, no write, no dbt); what they
read at load is listed in `refinery.definitions` (the prepared dbt manifest, the first landed
day, and the settings of `refinery.settings.READ_AT_LOAD`).
"""
