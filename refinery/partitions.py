"""The one time axis of the lake: arrival dates (UTC), one partition a day."""

import os

from dagster import DailyPartitionsDefinition

# Landing data may be as old as this; override for older backfills.
PARTITIONS_START = os.environ.get("REFINERY_PARTITIONS_START", "2025-01-01")

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
