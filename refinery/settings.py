"""Every `REFINERY_*` setting, declared once: its variable, type, default, what it does, and the
check its value must pass. No other refinery module reads a `REFINERY_*` variable
(tests/test_settings.py reads the source to hold that; the exceptions are refinery/faults.py's
REFINERY_KILL_AT, a test hook rather than a setting, and refinery/demo.py, which sets variables
for the processes it starts).

Read when used: `DATA_DIR.get()` reads the environment at that call, every call (nothing is
cached, so a process that sets a variable later, or a test, is seen). Importing this module reads
nothing. An empty variable is the same as an unset one. A value that does not parse or fails its
check raises `SettingError` (a ValueError) naming the variable, the value and what is expected.

Three kinds of setting are read when the code location's definitions are built, which is when
`refinery.definitions` is imported (Dagster needs them then; a module-scope `Definitions` keeps
`dagster ... -m refinery.definitions`, `dg check defs` and the tests' `from refinery.definitions
import defs` as they are):
- the partition axis: PARTITIONS_START, else the first landed day under DATA_DIR
  (`refinery.partitions`);
- the sensors' minimum_interval_seconds: SENSOR_INTERVAL_SECONDS (`refinery.sensors`);
- the defaults of the quality policy resource (`refinery.resources.QualityPolicy`), which Dagster
  shows as the resource's config and run config may override.
Everything else is read by the run, sensor tick or command that uses it.

Why not Dagster's `EnvVar` on the resource fields: an EnvVar has no default (an unset variable
fails the run), and every setting here has one. So resource fields default to the value of the
setting (QualityPolicy) or to None meaning "the setting, read when used" (LakeResource.data_dir,
OnlineStoreResource.url); a value given in code or run config still wins. For a secret or a
setting without a default, `EnvVar` stays the tool (the DVC registry's remote credentials).

`python -m refinery.settings` prints the settings table (README.md "Settings" holds it).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A REFINERY_* variable whose value does not parse or fails its check."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: `get()` is its value now (the environment's, else the default)."""

    env: str
    kind: str  # what the README says the value is
    parse: Callable[[str], T]
    default: T | Callable[[], T] | None
    default_text: str  # the default as the README says it
    description: str
    check: Callable[[T], str | None] | None = None  # what is wrong with a parsed value, or None

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The variable's text when it is set and not empty, else None."""
        value = (os.environ if environ is None else environ).get(self.env)
        return value if value is not None and value.strip() else None

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return self.raw(environ) is not None

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        raw = self.raw(environ)
        if raw is None:
            return self.default() if callable(self.default) else self.default  # type: ignore[return-value]
        try:
            value = self.parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SettingError(f"{self.env}={raw!r}: {exc} (expected {self.kind})") from None
        problem = self.check(value) if self.check else None
        if problem:
            raise SettingError(f"{self.env}={raw!r}: {problem}")
        return value


SETTINGS: dict[str, Setting] = {}


def _declare(setting: Setting[T]) -> Setting[T]:
    if setting.env in SETTINGS or not setting.env.startswith("REFINERY_"):
        raise ValueError(f"{setting.env}: declared twice, or not a REFINERY_ variable")
    SETTINGS[setting.env] = setting
    return setting


# --- parsers and checks ----------------------------------------------------------------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(text: str) -> str:
    """A calendar date, kept as its YYYY-MM-DD text."""
    if not _DATE.match(text):
        raise ValueError("not a YYYY-MM-DD date")
    dt.date.fromisoformat(text)  # 2025-02-30 fails here
    return text


def _path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*")
SIZE_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _size(text: str) -> str:
    """A size DuckDB reads (6GB, 8GiB, 512MB), kept as its text."""
    match = _SIZE.fullmatch(text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise ValueError("a size DuckDB reads: use e.g. 6GB or 8GiB")
    return text


def size_gb(text: str) -> float:
    """A size of `_size` in (decimal) gigabytes."""
    match = _SIZE.fullmatch(_size(text))
    assert match
    return float(match.group(1)) * SIZE_UNITS[match.group(2).lower()] / 1e9


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return text

    return parse


def _at_least(minimum: float) -> Callable[[float], str | None]:
    return lambda value: None if value >= minimum else f"must be >= {minimum}"


def _above(minimum: float) -> Callable[[float], str | None]:
    return lambda value: None if value > minimum else f"must be > {minimum}"


def _share(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be within [0, 1]"


def _positive_share(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be within (0, 1]"


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be a TCP port, 1..65535"


# --- the settings ------------------------------------------------------------------------------
# Where: the data root and the time axis.

DATA_DIR = _declare(
    Setting(
        "REFINERY_DATA_DIR", "a path", _path, lambda: _path("./data"), "`./data`",
        "The data root: landing/, lake/, warehouse.duckdb, registry/, online store. Read at load "
        "for the partition axis, and by every run. `make setup` writes it into .env.",
    )
)  # fmt: skip
PARTITIONS_START = _declare(
    Setting(
        "REFINERY_PARTITIONS_START", "a YYYY-MM-DD date", _date, None,
        "the first landed day under the data root, else `2025-01-01`",
        "The first daily partition (read when the definitions are built).",
    )
)  # fmt: skip

# Sensors.

SENSOR_INTERVAL_SECONDS = _declare(
    Setting(
        "REFINERY_SENSOR_INTERVAL_SECONDS", "an integer", _int, 30, "`30`",
        "Minimum seconds between ticks of every sensor (read when the definitions are built).",
        _at_least(1),
    )
)  # fmt: skip
LANDING_SETTLE_SECONDS = _declare(
    Setting(
        "REFINERY_LANDING_SETTLE_SECONDS", "a number", _float, 10.0, "`10`",
        "landing_sensor waits until a day's newest landed file is this many seconds old.",
        _at_least(0),
    )
)  # fmt: skip

# Quality policy (the `policy` resource's defaults).

MAX_QUARANTINE_RATE = _declare(
    Setting(
        "REFINERY_MAX_QUARANTINE_RATE", "a number", _float, 0.05, "`0.05`",
        "Silver blocks a partition when more than this share of its rows is quarantined.",
        _share,
    )
)  # fmt: skip
MAX_SNAPSHOT_SHRINK = _declare(
    Setting(
        "REFINERY_MAX_SNAPSHOT_SHRINK", "a number", _float, 0.5, "`0.5`",
        "Silver users/products block when a snapshot has fewer than (1 - this) x the previous "
        "snapshot's rows, or none.",
        _share,
    )
)  # fmt: skip
FRESHNESS_HALF_LIFE_HOURS = _declare(
    Setting(
        "REFINERY_FRESHNESS_HALF_LIFE_HOURS", "a number", _float, 24.0, "`24`",
        "Half-life of the freshness measure exp(-ln2 / half_life x hours).",
        _above(0),
    )
)  # fmt: skip
MIN_EVENT_TIME = _declare(
    Setting(
        "REFINERY_MIN_EVENT_TIME", "a YYYY-MM-DD date", _date, "2000-01-01", "`2000-01-01`",
        "Silver quarantines an event_time before this date (event_time_too_old).",
    )
)  # fmt: skip
MAX_EVENT_AGE_DAYS = _declare(
    Setting(
        "REFINERY_MAX_EVENT_AGE_DAYS", "an integer", _int, 365, "`365`",
        "... or more than this many days before the day it arrived.",
        _at_least(0),
    )
)  # fmt: skip

# Gold: dbt-duckdb.

DUCKDB_THREADS = _declare(
    Setting(
        "REFINERY_DUCKDB_THREADS", "an integer", _int, lambda: os.cpu_count() or 1,
        "the machine's cores",
        "DuckDB's worker threads in dbt (passed as the var duckdb_threads). The marts do not "
        "depend on it.",
        _at_least(1),
    )
)  # fmt: skip
DUCKDB_MEMORY_LIMIT = _declare(
    Setting(
        "REFINERY_DUCKDB_MEMORY_LIMIT", "a size", _size, "3GB", "`3GB`",
        "DuckDB's memory_limit in dbt (dbt_project/profiles.yml reads it; beyond it DuckDB "
        "spills to disk).",
    )
)  # fmt: skip
DBT_TARGETS_KEPT = _declare(
    Setting(
        "REFINERY_DBT_TARGETS_KEPT", "an integer", _int, 10, "`10`",
        "How many dbt invocation target dirs of the gold step stay; older ones are deleted.",
        _at_least(1),
    )
)  # fmt: skip

# ML: the training set and drift.

TRAINING_WINDOW_DAYS = _declare(
    Setting(
        "REFINERY_TRAINING_WINDOW_DAYS", "an integer", _int, 28, "`28`",
        "Labelled as-of dates in a training set (the default of its run config).",
        _at_least(1),
    )
)  # fmt: skip
FEATURE_WARMUP_DAYS = _declare(
    Setting(
        "REFINERY_FEATURE_WARMUP_DAYS", "an integer", _int, 30, "`30`",
        "As-of dates skipped after the first arrival, while the 30-day feature windows fill.",
        _at_least(0),
    )
)  # fmt: skip
DRIFT_WINDOW_DAYS = _declare(
    Setting(
        "REFINERY_DRIFT_WINDOW_DAYS", "an integer", _int, 7, "`7`",
        "As-of dates of current data the drift report compares with the training set.",
        _at_least(1),
    )
)  # fmt: skip
DRIFT_SHARE = _declare(
    Setting(
        "REFINERY_DRIFT_SHARE", "a number", _float, 0.5, "`0.5`",
        "The dataset drifts when at least this share of its features drift.",
        _positive_share,
    )
)  # fmt: skip
DRIFT_KEY_FEATURES = _declare(
    Setting(
        "REFINERY_DRIFT_KEY_FEATURES", "a comma-separated list", _list, (), "none",
        "Features whose drift alone makes the dataset drift.",
    )
)  # fmt: skip

# Online store and serving.

ONLINE_STORE = _declare(
    Setting(
        "REFINERY_ONLINE_STORE", "a store URL", str, "sqlite", "`sqlite`",
        "The online store: `sqlite` (a file under the data root) or `redis://host:port/db`.",
    )
)  # fmt: skip
ONLINE_PARITY_SAMPLE = _declare(
    Setting(
        "REFINERY_ONLINE_PARITY_SAMPLE", "an integer", _int, 200, "`200`",
        "Users the online/offline parity check reads back per run.",
        _at_least(1),
    )
)  # fmt: skip
SERVE_HOST = _declare(
    Setting(
        "REFINERY_SERVE_HOST", "a host", str, "127.0.0.1", "`127.0.0.1`",
        "Address the feature-serving API (`make serve`) listens on.",
    )
)  # fmt: skip
SERVE_PORT = _declare(
    Setting(
        "REFINERY_SERVE_PORT", "an integer", _int, 8000, "`8000`",
        "Port of the feature-serving API (server and client).",
        _port,
    )
)  # fmt: skip

# The UI's code references.

GIT_URL = _declare(
    Setting(
        "REFINERY_GIT_URL", "a repository URL", str, None, "none (local file paths)",
        "Code references in the UI link into this GitHub/GitLab repository.",
    )
)  # fmt: skip
GIT_BRANCH = _declare(
    Setting(
        "REFINERY_GIT_BRANCH", "a branch name", str, "main", "`main`",
        "The branch those links point at.",
    )
)  # fmt: skip
GIT_PLATFORM = _declare(
    Setting(
        "REFINERY_GIT_PLATFORM", "github or gitlab", _one_of("github", "gitlab"), None,
        "from the URL's host",
        "The git host's kind, when the host name does not say.",
    )
)  # fmt: skip


READ_AT_LOAD = frozenset(
    setting.env
    for setting in (
        PARTITIONS_START,
        DATA_DIR,
        SENSOR_INTERVAL_SECONDS,
        MAX_QUARANTINE_RATE,
        MAX_SNAPSHOT_SHRINK,
        FRESHNESS_HALF_LIFE_HOURS,
        MIN_EVENT_TIME,
        MAX_EVENT_AGE_DAYS,
        GIT_URL,
        GIT_BRANCH,
        GIT_PLATFORM,
    )
)
"""Read when the definitions are built (importing refinery.definitions): the partition axis, the
sensors' interval, the quality policy's defaults, and the code references' git links (branch and
platform only when REFINERY_GIT_URL is set). A new value needs a reload of the code location."""


def check_all(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every setting's value now; the first bad one raises SettingError."""
    return {name: setting.get(environ) for name, setting in SETTINGS.items()}


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| variable | value | default | read | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS.values():
        when = "**at load**" if s.env in READ_AT_LOAD else "when used"
        rows.append(f"| `{s.env}` | {s.kind} | {s.default_text} | {when} | {s.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
