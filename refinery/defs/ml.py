"""ML: the training set and the drift report, with the sensors and jobs that keep them fresh.

drift_sensor requests training_set_job, or training_set_bootstrap_job for version 1 (all three in
`refinery.sensors.drift_sensor`);
drift_report_automation refreshes the report, drift_report_job is the same by hand (both in
`refinery.sensors.drift_report_automation`).
"""

from dagster import Definitions

from refinery.assets.ml.drift_report import feature_drift_report
from refinery.assets.ml.training_dataset import training_dataset
from refinery.sensors.drift_report_automation import drift_report_automation, drift_report_job
from refinery.sensors.drift_sensor import bootstrap_job, drift_sensor, training_set_job

defs = Definitions(
    assets=[training_dataset, feature_drift_report],
    jobs=[training_set_job, bootstrap_job, drift_report_job],
    sensors=[drift_sensor, drift_report_automation],
)
