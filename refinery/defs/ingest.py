"""Ingest: landing/ → bronze → silver, and landing_sensor with the ingest_job it requests."""

from dagster import Definitions

from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.silver.assets import silver_assets
from refinery.sensors.landing_sensor import ingest_job, landing_sensor

defs = Definitions(
    assets=[*bronze_assets, *silver_assets],
    jobs=[ingest_job],
    sensors=[landing_sensor],
)
