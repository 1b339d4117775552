"""The refinery code location (`dagster ... -m refinery.definitions`): the concerns of
`refinery.defs` (ingest, gold, ml, online) merged with the shared resources and executor, and
the catalog (owners, tags, code references, code versions, freshness) applied to every asset.

The Definitions are built when this module is imported (one module-scope object, what
`dagster -m`, `dg check defs` and the tests load). Building them reads, and only reads:
- the prepared dbt manifest (`refinery.assets.gold.dbt_project`; dbt runs only under
  `dagster dev`, and a missing or stale manifest fails the load naming `make setup`);
- the settings Dagster needs then (`refinery.settings.READ_AT_LOAD`): the partition axis
  (REFINERY_PARTITIONS_START, else the first landed day under REFINERY_DATA_DIR), the sensors'
  interval, the quality policy's defaults and the code references' git links;
- three folder listings under the data root (`refinery.partitions`).
Every other setting is read by the run or tick that uses it.
"""

import warnings

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

# Two Dagster features refinery chose on purpose, whose warnings would otherwise repeat for
# every asset and check in every process's output (a run's log, `make demo`): partitioned asset
# checks (preview; what shows a check's result on its partition in the UI) and single-run
# backfill policies (beta; a backfill of any length is one run).
warnings.filterwarnings(
    "ignore", category=PreviewWarning, message="Specifying a partitions_def on an AssetCheckSpec"
)
warnings.filterwarnings("ignore", category=BetaWarning, message="Parameter `backfill_policy`")

from refinery.assets.gold import dbt_resource
from refinery.defs import gold, ingest, ml, online
from refinery.defs.catalog import apply_catalog
from refinery.online.resource import OnlineStoreResource
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.registry import DvcRegistry

# ingest_job runs one arrival date at a time by design: bronze/silver are one partition per run,
# gold (single-run backfills) accepts that too. Dagster warns about the mix; nothing to act on.
warnings.filterwarnings("ignore", message="Asset job ingest_job materializes assets with varying")


def _platform() -> Definitions:
    """What every concern shares: resources and the executor."""
    return Definitions(
        resources={
            "lake": LakeResource(),
            "policy": QualityPolicy(),
            "dbt": dbt_resource(),
            "dvc_registry": DvcRegistry(),
            "online_store": OnlineStoreResource(),
        },
        # One process per run: a step per subprocess costs ~20 s of imports on 2 cores
        # (DESIGN.md).
        executor=in_process_executor,
    )


# the only Definitions at module scope (Dagster's loader refuses two)
defs = apply_catalog(Definitions.merge(ingest.defs, gold.defs, ml.defs, online.defs, _platform()))
