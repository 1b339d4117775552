"""Online: the online store fed from gold (ingest_job runs it after gold), with its parity check."""

from dagster import Definitions

from refinery.assets.online import online_assets

defs = Definitions(assets=[*online_assets])
