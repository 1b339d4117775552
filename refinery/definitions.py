"""The refinery code location: one Definitions object (`dagster ... -m refinery.definitions`)."""

from dagster import Definitions, in_process_executor

from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.silver.assets import silver_assets
from refinery.resources import LakeResource, QualityPolicy

defs = Definitions(
    assets=[*bronze_assets, *silver_assets],
    resources={"lake": LakeResource(), "policy": QualityPolicy()},
    # One process per run: a step per subprocess costs ~20 s of imports on 2 cores (DESIGN.md).
    executor=in_process_executor,
)
