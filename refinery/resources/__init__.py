"""Resources: where the lake lives and the quality policy it is held to."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from refinery import settings
from refinery.resources.lake import LakePaths, data_dir_from_env


class LakeResource(ConfigurableResource):
    """The data root (DESIGN.md "Data root").

    Unset, it is the setting REFINERY_DATA_DIR (default ./data), read when used, not when the
    code location is imported, so a process that sets the variable later still writes there.
    """

    data_dir: str | None = Field(default=None, description="data root; default $REFINERY_DATA_DIR")

    @property
    def paths(self) -> LakePaths:
        return LakePaths(Path(self.data_dir).resolve() if self.data_dir else data_dir_from_env())


class QualityPolicy(ConfigurableResource):
    """Thresholds the checks enforce. A field not given in code or run config takes its setting
    (refinery.settings: REFINERY_MAX_QUARANTINE_RATE, ...) when the resource is built; in the
    code location that is when the definitions are built, at import, so the UI shows the values
    in force as the resource's config."""

    max_quarantine_rate: float = Field(
        default_factory=settings.MAX_QUARANTINE_RATE.get,
        description="silver blocks when more than this share of a partition's rows is quarantined",
    )
    freshness_half_life_hours: float = Field(
        default_factory=settings.FRESHNESS_HALF_LIFE_HOURS.get,
        description="half-life of the freshness measure exp(-ln2/half_life * hours)",
    )
    min_event_time: str = Field(
        default_factory=settings.MIN_EVENT_TIME.get,
        description="silver/events quarantines an event_time before this date (event_time_too_old)",
    )
    max_event_age_days: int = Field(
        default_factory=settings.MAX_EVENT_AGE_DAYS.get,
        description="... or more than this many days before the day it arrived",
    )
    max_snapshot_shrink: float = Field(
        default_factory=settings.MAX_SNAPSHOT_SHRINK.get,
        description="silver users/products blocks when a snapshot has fewer than (1 - this) x "
        "the previous snapshot's rows, or none",
    )


__all__ = ["LakePaths", "LakeResource", "QualityPolicy"]
