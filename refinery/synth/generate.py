"""One arrival day at a time: assemble its events, write its landing files and its manifest.

Day A's events folder holds the on-time events of A, late sessions of A-3..A-1 that land on
A, and verbatim re-deliveries of A-3..A-1 events. The earlier days' late and re-sent streams
are small and have their own random streams, so day A regenerates exactly the rows it needs
without rebuilding the whole of A-3..A-1.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sys
import time
import uuid
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from refinery.resources.lake import LakePaths, replace_dir_atomic
from refinery.synth import writer
from refinery.synth.config import SynthConfig
from refinery.synth.event_lines import render_events
from refinery.synth.faults import FAULT_KINDS, INVALID_KINDS, plan_faults
from refinery.synth.rng import rng_for
from refinery.synth.sessions import (
    DAY_MS,
    MEAN_EVENTS_PER_SESSION,
    REDELIVERED,
    EventBatch,
    events_target,
    simulate_stream_packed,
    simulate_stream_parts,
)
from refinery.synth.world import WorldState, products_snapshot, states_through, users_snapshot
from refinery.synth.writer import gzip_bytes, write_event_chunks

LATE_SHARE = 0.02  # of a day's events arrive 1-3 days late (whole sessions)
RESEND_SHARE = 0.005  # of a day's events are delivered again 1-3 days later
BULK_SHARE = 1.0 - LATE_SHARE - RESEND_SHARE
MAX_LATENESS_DAYS = 3
TRUNCATED_GZIP_EVENTS = 400
MANIFEST_VERSION = 1
# Rows of a day merged at a time (about): the day is written in windows of arrival time this
# large, so one big day needs its packed parts (~33 bytes an event) plus a few windows.
WINDOW_ROWS = 1_000_000
EPOCH = dt.datetime(1970, 1, 1)


def _sessions(config: SynthConfig, day_index: int, share: float) -> int:
    return max(1, round(events_target(config, day_index) * share / MEAN_EVENTS_PER_SESSION))


def _stream(config, state: WorldState, stream: str, delivery: str, share: float, pool):
    return simulate_stream_parts(
        config, state, stream, _sessions(config, state.day_index, share), delivery, pool
    )


class ArrivalDay:
    """The event rows that land on one day, produced in arrival order one time window at a time.

    The day's rows are its on-time stream (kept packed in its simulated parts, see
    StreamParts), its re-sent originals, and the late sessions and re-deliveries of
    earlier days that land on it, all stably sorted by arrival time in that order. A window
    [lo, hi) of arrival time holds exactly the rows of that sort whose arrival_ms is in it, in
    the same order: each source's rows in the window keep their order, and a stable sort of
    the sources laid end to end in the same order gives the same ties. So the windows, one
    after another, are the whole day's sorted rows, while only one window is ever merged.
    """

    def __init__(self, config: SynthConfig, states: dict[int, WorldState], day: int, pool=None):
        state = states[day]
        self.bulk = simulate_stream_packed(
            config, state, "bulk", _sessions(config, day, BULK_SHARE), "on_time", pool
        )
        date = config.date_of(day)
        self.day_start_ms = (
            int((dt.datetime(date.year, date.month, date.day) - EPOCH).total_seconds()) * 1000
        )
        others = [_stream(config, state, "resend", "resend", RESEND_SHARE, pool)]
        for source in range(max(0, day - MAX_LATENESS_DAYS), day):
            late = _stream(config, states[source], "late", "late", LATE_SHARE, pool)
            others.append(late.take(late["arrival_day"] == day))
            resent = _stream(config, states[source], "resend", "resend", RESEND_SHARE, pool)
            copies = resent.take(resent["resend_day"] == day)
            copies.columns["arrival_day"] = copies.columns.pop("resend_day")
            copies.columns["arrival_ms"] = copies.columns.pop("resend_ms")
            copies.columns["origin"] = np.full(len(copies), REDELIVERED, dtype=np.int8)
            others.append(copies)
        for batch in others:
            batch.columns.pop("resend_day", None)
            batch.columns.pop("resend_ms", None)
        self.others = others
        self.n = len(self.bulk) + sum(len(b) for b in others)

    def __len__(self) -> int:
        return self.n

    def windows(self, names=None):
        """Yield the day's rows in arrival order, as one EventBatch per window of arrival time.

        `names` limits the columns (seq, time_ms and arrival_ms always come along).
        """
        n_windows = max(1, -(-self.n // WINDOW_ROWS))
        cuts = [None, *(round(j * DAY_MS / n_windows) for j in range(1, n_windows)), None]
        for lo, hi in itertools.pairwise(cuts):
            bulk = self.bulk.window(
                None if lo is None else lo + self.day_start_ms,
                None if hi is None else hi + self.day_start_ms,
                None if names is None else [*names, "arrival_ms"],
            )
            pieces = [bulk]
            for other in self.others:
                arrival = other["arrival_ms"]
                inside = np.ones(len(other), dtype=bool)
                if lo is not None:
                    inside &= arrival >= lo
                if hi is not None:
                    inside &= arrival < hi
                pieces.append(EventBatch({k: other[k][inside] for k in bulk.columns}))
            rows = EventBatch.concat(pieces)
            yield rows.take(np.argsort(rows["arrival_ms"], kind="stable"))


def assemble_day(config: SynthConfig, states: dict[int, WorldState], day: int, pool=None):
    """All event rows that land on `day`, in arrival order (the order lines are written)."""
    return EventBatch.concat(list(ArrivalDay(config, states, day, pool).windows()))


class _RowReader:
    """Consecutive row ranges of a stream of EventBatches, as batches of the sizes asked for."""

    def __init__(self, batches):
        self.batches = iter(batches)
        self.current = None
        self.at = 0

    def read(self, n: int) -> EventBatch:
        pieces = []
        while n > 0:
            if self.current is None or self.at == len(self.current):
                self.current, self.at = next(self.batches), 0
                continue
            take = min(n, len(self.current) - self.at)
            pieces.append(self.current.take(slice(self.at, self.at + take)))
            self.at += take
            n -= take
        return pieces[0] if len(pieces) == 1 else EventBatch.concat(pieces)

    def file_chunks(self, n: int):
        """The next `n` rows cut as one file's render chunks (see writer.file_chunks)."""
        for a in range(0, n, writer.RENDER_CHUNK_ROWS):
            yield self.read(min(writer.RENDER_CHUNK_ROWS, n - a))


def _population_changes(before: WorldState | None, after: WorldState) -> dict:
    users, products = after.users, after.products
    if before is None:
        return {"users": users.count, "products": products.count}
    n_users, n_products = before.users.count, before.products.count
    return {
        "users": users.count,
        "signups": users.count - n_users,
        "plan_changes": int((users.plan[:n_users] != before.users.plan).sum()),
        "opt_in_toggles": int((users.opt_in[:n_users] != before.users.opt_in).sum()),
        "products": products.count,
        "new_products": products.count - n_products,
        "repriced_products": int(
            (products.base_price[:n_products] != before.products.base_price).sum()
        ),
        "deactivated_products": int((before.products.active & ~products.active[:n_products]).sum()),
        "reactivated_products": int((~before.products.active & products.active[:n_products]).sum()),
        "active_products": int(products.active.sum()),
    }


def _staging(target: Path) -> Path:
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    return staging


def _write_json_atomic(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _truncated_gzip(config, state: WorldState, path: Path, pool) -> dict:
    """A gzip file cut off mid-stream, as a killed upload leaves it."""
    n_sessions = max(20, int(TRUNCATED_GZIP_EVENTS / MEAN_EVENTS_PER_SESSION))
    events = simulate_stream_parts(config, state, "truncated_gzip", n_sessions, "on_time", pool)
    rendered = render_events(events, config.start)
    full = gzip_bytes(rendered.data.tobytes())
    cut = int(len(full) * 0.6)
    path.write_bytes(full[:cut])
    recovered = zlib.decompressobj(31).decompress(full[:cut])
    return {
        "file": path.name,
        "compression": "gzip",
        "day_fault": "truncated_gzip",
        "lines_before_truncation": len(rendered),
        "complete_lines_readable": recovered.count(b"\n"),
        "bytes": cut,
        "bytes_before_truncation": len(full),
    }


def write_day(
    config: SynthConfig, paths: LakePaths, states: dict[int, WorldState], day: int, pool=None
) -> dict:
    """Write every landing file of arrival day `day` and return its manifest."""
    date = config.date_of(day)
    iso = date.isoformat()
    arrivals = ArrivalDay(config, states, day, pool)
    n_events = len(arrivals)
    # faults are planned on the whole day's arrival order, which needs only two small columns
    kinds = ("origin", "event_type")
    planned = [{k: w[k] for k in kinds} for w in arrivals.windows(kinds)]
    faults = plan_faults(
        EventBatch({k: np.concatenate([w[k] for w in planned]) for k in kinds}),
        config.seed,
        day,
        config.fault_rate,
    )
    del planned

    n_files = int(rng_for(config.seed, day, "files").integers(1, 5))
    gzip = day % 3 == 2
    suffix = ".jsonl.gz" if gzip else ".jsonl"
    bounds = np.linspace(0, n_events, n_files + 1).astype(np.int64)
    fault_rows = np.array(sorted(faults), dtype=np.int64)

    events_dir = paths.landing_dir("events", iso)
    staging = _staging(events_dir)
    files = []
    reader = _RowReader(arrivals.windows())
    try:
        for k in range(n_files):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            mine = fault_rows[(fault_rows >= lo) & (fault_rows < hi)]
            files.append(
                write_event_chunks(
                    staging / f"events-{iso}-{k + 1}{suffix}",
                    gzip,
                    reader.file_chunks(hi - lo),
                    {int(r) - lo: faults[int(r)] for r in mine},
                    config.start,
                    date,
                    pool,
                )
            )
        extra = n_files
        if day in config.empty_file_days:
            extra += 1
            empty = staging / f"events-{iso}-{extra}.jsonl"
            empty.write_bytes(b"")
            files.append(
                {
                    "file": empty.name,
                    "compression": "none",
                    "day_fault": "empty_file",
                    "lines": 0,
                    "bytes": 0,
                }
            )
        if day in config.truncated_gzip_days:
            extra += 1
            files.append(
                _truncated_gzip(
                    config, states[day], staging / f"events-{iso}-{extra}.jsonl.gz", pool
                )
            )
        replace_dir_atomic(staging, events_dir)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise

    users = users_snapshot(states[day], config)
    missing_column = None
    if day in config.users_missing_column_days:
        users = users.drop("plan")
        missing_column = "plan"
    _write_csv_dir(users, paths.landing_dir("users", iso), "users.csv")
    products = products_snapshot(states[day], config)
    _write_csv_dir(products, paths.landing_dir("products", iso), "products.csv")

    regular = [f for f in files if "day_fault" not in f]
    fault_totals = {kind: sum(f["faults"][kind]["count"] for f in regular) for kind in FAULT_KINDS}
    lines = sum(f["lines"] for f in regular)
    redelivered = sum(f["redelivered"]["count"] for f in regular)
    quarantined = sum(fault_totals[k] for k in INVALID_KINDS)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "arrival_date": iso,
        "day_index": day,
        "line_numbers": "1-based, as a reader counts lines of the (decompressed) file",
        "events_target": events_target(config, day),
        "files": files,
        "totals": {
            "lines": lines,
            "faults": fault_totals,
            "redelivered": redelivered,
            "late": sum(f["late"]["count"] for f in regular),
            "on_time": n_events - redelivered - sum(f["late"]["count"] for f in regular),
        },
        "expected_silver": {
            "quarantined": quarantined,
            "duplicates_in_day": fault_totals["duplicate_line"],
            "redelivered_duplicates": redelivered,
            "rows": lines - quarantined - fault_totals["duplicate_line"] - redelivered,
            "note": "rows assumes every earlier arrival day was ingested (re-deliveries then dedupe) "
            "and excludes day-fault files (empty, truncated gzip)",
        },
        "day_faults": {
            "empty_file": day in config.empty_file_days,
            "truncated_gzip": day in config.truncated_gzip_days,
            "users_missing_column": missing_column,
        },
        "population": _population_changes(states.get(day - 1), states[day]),
        "snapshots": {"users_rows": users.height, "products_rows": products.height},
        "drift": config.drift.in_force(date),
        "config": config.describe(),
    }
    _write_json_atomic(manifest, paths.landing / "_manifest" / f"{iso}.json")
    return manifest


def _write_csv_dir(frame: pl.DataFrame, target: Path, name: str) -> None:
    staging = _staging(target)
    frame.write_csv(staging / name, date_format="%Y-%m-%d")
    replace_dir_atomic(staging, target)


def generate(config: SynthConfig, data_dir: Path) -> dict:
    """Write the landing data of every configured day under `data_dir`; return a summary."""
    began = time.perf_counter()
    paths = LakePaths(Path(data_dir))
    window: deque[WorldState] = deque(maxlen=MAX_LATENESS_DAYS + 1)
    last_day = config.first_day + config.days - 1
    progress = _progress(config)
    totals = {"lines": 0, "files": 0, "redelivered": 0, "late": 0, "bytes": 0}
    fault_totals = {kind: 0 for kind in FAULT_KINDS}
    dates = []
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for state in states_through(config, last_day):
            window.append(state)
            if state.day_index < config.first_day:
                continue
            manifest = write_day(
                config, paths, {s.day_index: s for s in window}, state.day_index, pool
            )
            dates.append(manifest["arrival_date"])
            for key in ("lines", "redelivered", "late"):
                totals[key] += manifest["totals"][key]
            totals["files"] += len(manifest["files"])
            totals["bytes"] += sum(f["bytes"] for f in manifest["files"])
            for kind, count in manifest["totals"]["faults"].items():
                fault_totals[kind] += count
            if progress is not None:
                progress.update(1)
                progress.set_postfix(
                    day=manifest["arrival_date"], lines=manifest["totals"]["lines"]
                )
    if progress is not None:
        progress.close()
    final = window[-1]
    return {
        "data_dir": str(paths.root),
        "dates": dates,
        "event_lines": totals["lines"],
        "event_files": totals["files"],
        "event_bytes": totals["bytes"],
        "faults": fault_totals,
        "redelivered": totals["redelivered"],
        "late": totals["late"],
        "users": final.users.count,
        "products": final.products.count,
        "seconds": round(time.perf_counter() - began, 2),
    }


def _progress(config: SynthConfig):
    if not config.show_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=config.days, unit="day", desc="refinery-synth", file=sys.stderr)
