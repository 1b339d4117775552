"""Deduplication against all of history at 1M events a day: silver's scan of the earlier
partitions (`refinery.assets.silver.event_index.prior_rows`) against a per-partition index of
64-bit fingerprints probed through a prefix bitmap (the design it replaced, loaded from git
revision `a1c1824` at run time), side by side at 30, 90 and 365 days of history.

One lake is grown day by day to each history length: every day a silver events partition of
`--events` rows (and, for the fingerprint variant, its `event_ids.index`). Then one new day of
`--events` ids, `--redelivered` of them re-deliveries spread over the history, is checked by both;
each must return exactly the re-delivered ids (checked on every run), then each is timed (median of
--repeat, each run in a fresh child process whose ru_maxrss is its peak memory).

    uv run python -m bench.bench_event_index --events 1000000 --days 30,90,365
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

START = date(2025, 1, 1)
INDEX_REV = "a1c1824"
REPO = Path(__file__).resolve().parents[1]


def fingerprint_index_module():
    source = subprocess.check_output(
        ["git", "-C", str(REPO), "show", f"{INDEX_REV}:refinery/assets/silver/event_index.py"],
        text=True,
    )
    path = Path(tempfile.mkdtemp()) / "fingerprint_index.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fingerprint_index", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fingerprint_index"] = module
    spec.loader.exec_module(module)
    return module


def silver_day(day: int, n: int) -> pl.DataFrame:
    """A silver events partition (ids `ev-<day>-<row>`)."""
    arrival = START + timedelta(days=day)
    return pl.DataFrame({"i": pl.int_range(n, eager=True)}).select(
        event_id=pl.format("ev-{}-{}", pl.lit(f"{day:04d}"), pl.col("i").cast(pl.String).str.zfill(8)),
        user_id=pl.format("u{}", pl.col("i") % 100_000),
        event_type=pl.lit("view"),
        event_time=pl.lit(datetime(arrival.year, arrival.month, arrival.day, 12, tzinfo=UTC)),
        product_id=pl.format("p{}", pl.col("i") % 5_000),
        amount=pl.lit(None, dtype=pl.Float64),
        quantity=pl.lit(1, dtype=pl.Int32),
        device=pl.lit("web"),
        session_id=pl.lit(None, dtype=pl.String),
        arrival_date=pl.lit(arrival),
        _source_file=pl.lit(f"landing/events/{arrival}/a.jsonl"),
        _line=pl.col("i") + 1,
        _ingested_at=pl.lit(datetime(arrival.year, arrival.month, arrival.day, 23, tzinfo=UTC)),
    )


def build(root: Path, days: int, n: int) -> None:
    from refinery.resources.lake import LakePaths, write_parquet_atomic

    fingerprint = fingerprint_index_module()
    paths = LakePaths(root)
    for d in range(days):
        target = paths.partition_dir("silver", "events", (START + timedelta(days=d)).isoformat())
        if (target / fingerprint.INDEX_FILE).exists():
            continue
        frame = silver_day(d, n)
        write_parquet_atomic(frame, target / "part-0.parquet")
        fingerprint.write_index(frame, target / fingerprint.INDEX_FILE)


def new_day(days: int, n: int, redelivered: int, seed: int = 7) -> tuple[pl.Series, set[str]]:
    rng = np.random.default_rng(seed)
    old_days = rng.integers(0, days, redelivered)
    old_rows = rng.integers(0, n, redelivered)
    again = {f"ev-{d:04d}-{r:08d}" for d, r in zip(old_days, old_rows)}
    fresh = [f"new-{i:08d}" for i in range(n - len(again))]
    return pl.Series("event_id", [*fresh, *sorted(again)]), again


def child(method: str, root: str, days: int, n: int, redelivered: int) -> None:
    from refinery.assets.silver import event_index
    from refinery.resources.lake import LakePaths

    module = event_index if method == "scan" else fingerprint_index_module()
    paths = LakePaths(Path(root))
    ids, expected = new_day(days, n, redelivered)
    arrival = START + timedelta(days=days)
    started = time.perf_counter()
    found = set(module.prior_rows(paths, arrival, ids)["event_id"])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "correct": found == expected}))


def measure(method, root, days, n, redelivered, repeat) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.check_output(
            [sys.executable, "-m", "bench.bench_event_index", "--child", method, str(root),
             str(days), str(n), str(redelivered)], text=True,
        )
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["correct"] for r in runs), f"{method} found the wrong ids at {days} days"
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", default="30,90,365")
    parser.add_argument("--redelivered", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="event-index-"))
    print(f"work dir {work}; {args.events} events/day, {args.redelivered} re-deliveries", flush=True)
    for days in sorted(int(d) for d in args.days.split(",")):
        build(work, days, args.events)
        scan = measure("scan", work, days, args.events, args.redelivered, args.repeat)
        index = measure("index", work, days, args.events, args.redelivered, args.repeat)
        print(
            f"{days:4d} days: scan (silver) {scan['seconds']:6.2f} s, {scan['peak_mb']:5.0f} MB | "
            f"fingerprint index {index['seconds']:6.2f} s, {index['peak_mb']:5.0f} MB | "
            f"index / scan {index['seconds'] / scan['seconds']:.1f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
