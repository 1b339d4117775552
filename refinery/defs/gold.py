"""Gold: the dbt-duckdb marts exported to Parquet, with their Pandera checks.

Gold has no job or sensor of its own: landing_sensor's ingest_job runs it after silver, and a
backfill is `dagster asset materialize --select group:gold --partition-range ...`.
"""

from dagster import Definitions

from refinery.assets.gold import gold_assets
from refinery.assets.gold.checks import gold_checks

defs = Definitions(assets=[*gold_assets], asset_checks=gold_checks)
