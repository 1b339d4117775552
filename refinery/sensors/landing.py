"""What has landed and not been ingested: pure functions over landing/ and a sensor cursor."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from refinery.resources.lake import SOURCES

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Arrival:
    date: str
    sources: tuple[str, ...]  # which of events/users/products landed that day
    fingerprint: str  # changes when any file is added, removed, rewritten


def scan_landing(landing: Path, settle_seconds: float = 0.0, now: float | None = None) -> list[Arrival]:
    """Arrival dates with their files' fingerprint, oldest first.

    A date whose newest file is younger than `settle_seconds` is left for a later tick, so a
    folder that is still being written is not ingested half-way.
    """
    now = time.time() if now is None else now
    files_by_date: dict[str, list[tuple[str, Path]]] = {}
    for source in SOURCES:
        base = landing / source
        if not base.is_dir():
            continue
        for day in base.iterdir():
            if day.is_dir() and DATE_DIR.match(day.name):
                for f in day.iterdir():
                    if f.is_file() and not f.name.startswith("."):
                        files_by_date.setdefault(day.name, []).append((source, f))
    arrivals = []
    for day, files in sorted(files_by_date.items()):
        stats = sorted((str(f.relative_to(landing)), f.stat()) for _, f in files)
        if settle_seconds and max(s.st_mtime for _, s in stats) > now - settle_seconds:
            continue
        digest = hashlib.sha256(
            json.dumps([(name, s.st_size, s.st_mtime_ns) for name, s in stats]).encode()
        ).hexdigest()[:16]
        sources = tuple(s for s in SOURCES if any(src == s for src, _ in files))
        arrivals.append(Arrival(day, sources, digest))
    return arrivals


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
