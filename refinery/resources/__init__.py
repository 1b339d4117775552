"""Resources: where the lake lives and the quality policy it is held to."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from refinery.resources.lake import LakePaths, data_dir_from_env


class LakeResource(ConfigurableResource):
    """The data root (DESIGN.md "Data root").

    Unset, it is $REFINERY_DATA_DIR (or ./data) read when used, not when the code location is
    imported, so a process that sets the variable later still writes where it says.
    """

    data_dir: str | None = Field(default=None, description="data root; default $REFINERY_DATA_DIR")

    @property
    def paths(self) -> LakePaths:
        return LakePaths(Path(self.data_dir).resolve() if self.data_dir else data_dir_from_env())


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class QualityPolicy(ConfigurableResource):
    """Thresholds the checks enforce. Environment variables override the defaults."""

    max_quarantine_rate: float = Field(
        default_factory=lambda: _env_float("REFINERY_MAX_QUARANTINE_RATE", 0.05),
        description="silver blocks when more than this share of a partition's rows is quarantined",
    )
    freshness_half_life_hours: float = Field(
        default_factory=lambda: _env_float("REFINERY_FRESHNESS_HALF_LIFE_HOURS", 24.0),
        description="half-life of the freshness measure exp(-ln2/half_life * hours)",
    )
    min_event_time: str = Field(
        default_factory=lambda: os.environ.get("REFINERY_MIN_EVENT_TIME", "2000-01-01"),
        description="silver/events quarantines an event_time before this date (event_time_too_old)",
    )
    max_event_age_days: int = Field(
        default_factory=lambda: int(_env_float("REFINERY_MAX_EVENT_AGE_DAYS", 365)),
        description="... or more than this many days before the day it arrived",
    )
    max_snapshot_shrink: float = Field(
        default_factory=lambda: _env_float("REFINERY_MAX_SNAPSHOT_SHRINK", 0.5),
        description="silver users/products blocks when a snapshot has fewer than (1 - this) x "
        "the previous snapshot's rows, or none",
    )


__all__ = ["LakePaths", "LakeResource", "QualityPolicy"]
