"""`drift_report_automation` and `drift_report_job`: refreshing ml/feature_drift_report.

The automation sensor evaluates the report's automation condition (`report_automation_condition`
in `refinery.assets.ml.drift_report`); the job is the same refresh by hand, through the run
queue:  `dagster job launch -w workspace.yaml -j drift_report_job`.
"""

import warnings

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
    define_asset_job,
)

from refinery.assets.ml.drift_report import REPORT_KEY
from refinery.sensors import sensor_interval

drift_report_job = define_asset_job(
    "drift_report_job",
    selection=AssetSelection.assets(REPORT_KEY),
    description="Recompute ml/feature_drift_report now (drift_report_automation does it after "
    "new gold days and new training-set versions).",
)

with warnings.catch_warnings():
    # use_user_code_server is beta in Dagster 1.13; refinery depends on it knowingly
    warnings.filterwarnings("ignore", category=BetaWarning, message=".*use_user_code_server")
    drift_report_automation = AutomationConditionSensorDefinition(
        "drift_report_automation",
        target=AssetSelection.assets(REPORT_KEY),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=sensor_interval(),
        # The report's condition has a custom part (ReferenceOutdated reads the training set's
        # version tag): custom conditions are evaluated in the code server, not in the daemon.
        use_user_code_server=True,
        description=(
            "Refreshes ml/feature_drift_report after gold days built outside a landing run "
            "(landing runs end with the report themselves) or a newly published training-set "
            "version (a rebuild that published nothing does not count)."
        ),
    )
