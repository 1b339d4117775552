"""The refinery code location: one Definitions object (`dagster ... -m refinery.definitions`)."""

import warnings

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.gold import dbt_resource, gold_assets
from refinery.assets.gold.checks import gold_checks
from refinery.assets.ml.drift_report import REPORT_KEY, feature_drift_report
from refinery.assets.ml.training_dataset import training_dataset
from refinery.assets.online import online_assets
from refinery.assets.silver.assets import silver_assets
from refinery.online.resource import OnlineStoreResource
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.registry import DvcRegistry
from refinery.sensors import sensor_interval
from refinery.sensors.drift_sensor import drift_sensor, training_set_job
from refinery.sensors.landing_sensor import ingest_job, landing_sensor

# ingest_job runs one arrival date at a time by design: bronze/silver are one partition per run,
# gold (single-run backfills) accepts that too. Dagster warns about the mix; nothing to act on.
warnings.filterwarnings("ignore", message="Asset job ingest_job materializes assets with varying")
# use_user_code_server is beta in Dagster 1.13; refinery depends on it knowingly (below).
warnings.filterwarnings("ignore", message="Parameter `use_user_code_server`")

# Refresh the drift report by hand, through the run queue:
#   dagster job launch -w workspace.yaml -j drift_report_job
drift_report_job = define_asset_job(
    "drift_report_job",
    selection=AssetSelection.assets(REPORT_KEY),
    description="Recompute ml/feature_drift_report now (drift_report_automation does it after "
    "new gold days and new training-set versions).",
)

automation_sensor = AutomationConditionSensorDefinition(
    "drift_report_automation",
    target=AssetSelection.assets(AssetKey(["ml", "feature_drift_report"])),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval(),
    # The report's condition has a custom part (NewTrainingSetVersion reads the training set's
    # version tag): custom conditions are evaluated in the code server, not in the daemon.
    use_user_code_server=True,
    description=(
        "Refreshes ml/feature_drift_report after new gold days or a newly published "
        "training-set version (a rebuild that published nothing does not count)."
    ),
)

defs = Definitions(
    assets=[
        *bronze_assets,
        *silver_assets,
        *gold_assets,
        training_dataset,
        feature_drift_report,
        *online_assets,
    ],
    asset_checks=gold_checks,
    jobs=[ingest_job, training_set_job, drift_report_job],
    sensors=[landing_sensor, drift_sensor, automation_sensor],
    resources={
        "lake": LakeResource(),
        "policy": QualityPolicy(),
        "dbt": dbt_resource(),
        "dvc_registry": DvcRegistry(),
        "online_store": OnlineStoreResource(),
    },
    # One process per run: a step per subprocess costs ~20 s of imports on 2 cores (DESIGN.md).
    executor=in_process_executor,
)
