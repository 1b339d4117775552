"""Sensors: landing_sensor ingests new arrival dates, drift_sensor rebuilds the training set."""

import os


def sensor_interval(default: int = 30) -> int:
    """Seconds between ticks; REFINERY_SENSOR_INTERVAL_SECONDS shortens it for demos and tests."""
    return int(os.environ.get("REFINERY_SENSOR_INTERVAL_SECONDS", default))
