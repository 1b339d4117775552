"""The one time axis of the lake: arrival dates (UTC), one partition a day.

The first partition is the first day that landed, so the UI's "N% filled" counts days that
could hold data, not days since a made-up start:

1. `REFINERY_PARTITIONS_START` (YYYY-MM-DD) wins when set: older backfills, or a fixed axis.
2. Otherwise, when `REFINERY_DATA_DIR` names the data root (make setup's `.env` does, for
   every `dagster` command run from the repo, and every make target exports it), the earliest
   arrival date found under it: a
   `landing/<source>/<YYYY-MM-DD>/` folder holding at least one file, or an ingested
   `lake/bronze/<source>/date=<YYYY-MM-DD>/` partition (so pruning landing/ never shrinks the
   axis under data already in the lake). Dates before 2000-01-01 or after today are not
   arrival dates and never move the start (landing_sensor names them instead).
3. Nothing landed yet, or no `REFINERY_DATA_DIR`: `DEFAULT_PARTITIONS_START`. (A process
   without it, such as pytest importing the code location, never reads the repo's `./data`:
   a demo lake there must not move the start past the dates of the tests' own lakes.)

Both settings (refinery.settings) are read when this module is imported, i.e. when the code
location's definitions are built: Dagster needs the partitions definition then.
Reading the data root when the code location loads is a side effect, but a bounded, read-only
one: three folder listings of landing/ and of lake/bronze/ (no file is opened, nothing is
written). A Dagster partitions definition must be static at load; the alternative (a dynamic
partitions definition) would need a write to the instance for every day. The axis is fixed
for the life of the process: a day that lands *before* the current start is named by
landing_sensor ("before the first partition") until the code location is reloaded (UI:
Deployment → Reload, or restart `make dev`), which moves the start back to it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path

from dagster import DailyPartitionsDefinition

from refinery import settings
from refinery.resources.lake import SOURCES

DEFAULT_PARTITIONS_START = "2025-01-01"
# No arrival date is older than the oldest event time the silver contract accepts.
EARLIEST_ARRIVAL = dt.date(2000, 1, 1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _as_date(name: str) -> dt.date | None:
    if not _DATE.match(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


def _holds_a_file(folder: Path) -> bool:
    try:
        return any(not p.name.startswith(".") and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # missing, unreadable or not a folder: nothing landed there
        return []


def first_arrival_date(data_root: Path, today: dt.date | None = None) -> dt.date | None:
    """The earliest arrival date under `data_root` (landing folders with a file, bronze
    partitions), ignoring names that are not calendar dates in [2000-01-01, today]."""
    today = today or dt.datetime.now(dt.UTC).date()
    found: list[dt.date] = []
    for source in SOURCES:
        for folder in _listing(data_root / "landing" / source):
            day = _as_date(folder.name)
            if day and EARLIEST_ARRIVAL <= day <= today and _holds_a_file(folder):
                found.append(day)
        for folder in _listing(data_root / "lake" / "bronze" / source):
            day = _as_date(folder.name.removeprefix("date="))
            if folder.name.startswith("date=") and day and EARLIEST_ARRIVAL <= day <= today:
                found.append(day)
    return min(found) if found else None


def partitions_start(
    environ: Mapping[str, str] | None = None,
    data_root: Path | None = None,
    today: dt.date | None = None,
) -> str:
    """The first partition key (see the module docstring for the order of precedence)."""
    explicit = settings.PARTITIONS_START.get(environ)
    if explicit:
        return explicit
    if data_root is None:
        if not settings.DATA_DIR.is_set(environ):
            return DEFAULT_PARTITIONS_START
        data_root = settings.DATA_DIR.get(environ)
    first = first_arrival_date(data_root, today)
    return first.isoformat() if first else DEFAULT_PARTITIONS_START


PARTITIONS_START = partitions_start()

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
