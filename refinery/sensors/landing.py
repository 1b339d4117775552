"""What has landed and not been ingested: pure functions over landing/ and a sensor cursor."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from refinery.resources.lake import SOURCES

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Arrival:
    date: str
    sources: tuple[str, ...]  # which of events/users/products landed that day
    fingerprint: str  # changes when any file is added, removed, rewritten


@dataclass
class LandingSurvey:
    """What `landing/` holds: arrival dates to ingest, and every entry that cannot be, with why."""

    arrivals: list[Arrival] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # "path: why", never ingested as it is
    settling: list[str] = field(default_factory=list)  # dates whose files are still being written


def arrival_date_problem(
    name: str, first: str | None = None, last: str | None = None
) -> str | None:
    """Why a folder name is not an arrival date refinery can ingest (None: it is one)."""
    if not DATE_DIR.match(name):
        return "not an arrival date (expected a YYYY-MM-DD folder)"
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return "not a calendar date"
    if first is not None and name < first:
        return f"before the first partition {first} (set REFINERY_PARTITIONS_START, or reload the code location, to ingest it)"
    if last is not None and name > last:
        return f"after the last partition {last} (a date in the future)"
    return None


def survey_landing(
    landing: Path,
    settle_seconds: float = 0.0,
    now: float | None = None,
    first_partition: str | None = None,
    last_partition: str | None = None,
) -> LandingSurvey:
    """Arrival dates with their files' fingerprint, oldest first, and what cannot be ingested.

    A date whose newest file is younger than `settle_seconds` is left for a later tick, so a
    folder that is still being written is not ingested half-way. Nothing in `landing/` makes
    this raise: an entry that cannot be read is named in `unusable` with the reason.
    """
    now = time.time() if now is None else now
    survey = LandingSurvey()
    files_by_date: dict[str, list[tuple[str, str, os.stat_result]]] = {}
    for top in _entries(landing, survey):
        if top.name not in SOURCES:
            survey.unusable.append(f"{_rel(top, landing)}: not a source ({', '.join(SOURCES)})")
            continue
        if not top.is_dir():
            survey.unusable.append(f"{_rel(top, landing)}: a file where a source folder belongs")
            continue
        for day in _entries(top, survey):
            where = _rel(day, landing)
            if not day.is_dir():
                survey.unusable.append(f"{where}: a file outside any arrival-date folder")
                continue
            problem = arrival_date_problem(day.name, first_partition, last_partition)
            if problem:
                survey.unusable.append(f"{where}: {problem}")
                continue
            found = False
            for f in _entries(day, survey):
                try:
                    stat = f.stat()
                except OSError as exc:  # a dangling link, a file removed mid-scan
                    survey.unusable.append(f"{_rel(f, landing)}: cannot be read ({exc.strerror})")
                    continue
                if f.is_file() and not f.name.startswith("."):
                    files_by_date.setdefault(day.name, []).append(
                        (top.name, _rel(f, landing), stat)
                    )
                    found = True
            if not found:
                survey.unusable.append(f"{where}: no files to ingest (empty, or only hidden files)")
    for day, files in sorted(files_by_date.items()):
        stats = sorted((name, stat) for _, name, stat in files)
        if settle_seconds and max(s.st_mtime for _, s in stats) > now - settle_seconds:
            survey.settling.append(day)
            continue
        digest = hashlib.sha256(
            json.dumps([(name, s.st_size, s.st_mtime_ns) for name, s in stats]).encode()
        ).hexdigest()[:16]
        sources = tuple(s for s in SOURCES if any(src == s for src, _, _ in files))
        survey.arrivals.append(Arrival(day, sources, digest))
    return survey


def _entries(folder: Path, survey: LandingSurvey) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        survey.unusable.append(f"{folder}: cannot be listed ({exc.strerror})")
        return []


def _rel(path: Path, landing: Path) -> str:
    return f"landing/{path.relative_to(landing)}"


def scan_landing(
    landing: Path, settle_seconds: float = 0.0, now: float | None = None
) -> list[Arrival]:
    """The arrival dates of `survey_landing` (tests and tools that need only those)."""
    return survey_landing(landing, settle_seconds, now).arrivals


def new_arrivals(
    arrivals: list[Arrival], seen: dict[str, str], ingested: set[str] = frozenset()
) -> tuple[list[Arrival], dict[str, str]]:
    """(arrivals to ingest, updated cursor).

    `seen` maps date -> fingerprint already requested. A date the sensor has never seen but that
    is already ingested (a backfill, a CLI run) is adopted as it is; a date whose files changed
    since the sensor requested it is ingested again.
    """
    todo, cursor = [], dict(seen)
    for arrival in arrivals:
        known = seen.get(arrival.date)
        if known == arrival.fingerprint:
            continue
        cursor[arrival.date] = arrival.fingerprint
        if known is None and arrival.date in ingested:
            continue
        todo.append(arrival)
    return todo, cursor
