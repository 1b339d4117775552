"""Sensors: landing_sensor ingests new arrival dates, drift_sensor rebuilds the training set."""

from refinery import settings


def sensor_interval() -> int:
    """Seconds between ticks (REFINERY_SENSOR_INTERVAL_SECONDS, default 30; demos and tests
    shorten it). Read when a sensor is defined, i.e. when the definitions are built."""
    return settings.SENSOR_INTERVAL_SECONDS.get()
