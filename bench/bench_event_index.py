"""Deduplication against all of history at 1M events a day: the event-id index against reading
every earlier partition's event_ids, side by side, at 30, 90 and 365 days of history.

For each history length the script writes that many silver events partitions the way silver does
(the parts, and `event_ids.index` beside each), then
checks one new day of `--events` ids of which `--redelivered` are re-deliveries spread over the
history. Both methods must find exactly the re-delivered ids (checked first); then each is timed
(median of --repeat) with its peak memory (ru_maxrss of a fresh child process per measurement).

    uv run python -m bench.bench_event_index --events 1000000 --days 30,90,365
"""

from __future__ import annotations

import argparse
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


def silver_day(day: int, n: int) -> pl.DataFrame:
    """A silver events partition's columns the index and the scan read (ids `ev-<day>-<row>`)."""
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
    )


def build(root: Path, days: int, n: int) -> None:
    """`days` silver partitions as silver writes them: the parts and the index beside them."""
    from refinery.assets.silver.event_index import INDEX_FILE, write_index
    from refinery.resources.lake import LakePaths, write_parquet_atomic

    paths = LakePaths(root)
    for d in range(days):
        target = paths.partition_dir("silver", "events", (START + timedelta(days=d)).isoformat())
        if (target / INDEX_FILE).exists():
            continue
        frame = silver_day(d, n)
        write_parquet_atomic(frame, target / "part-0.parquet")
        write_index(frame, target / INDEX_FILE)


def new_day(days: int, n: int, redelivered: int, seed: int = 7) -> tuple[pl.Series, set[str]]:
    rng = np.random.default_rng(seed)
    old_days = rng.integers(0, days, redelivered)
    old_rows = rng.integers(0, n, redelivered)
    again = {f"ev-{d:04d}-{r:08d}" for d, r in zip(old_days, old_rows)}
    fresh = [f"new-{i:08d}" for i in range(n - len(again))]
    return pl.Series("event_id", [*fresh, *sorted(again)]), again


def child(method: str, root: str, days: int, n: int, redelivered: int) -> None:
    from refinery.assets.silver.event_index import prior_rows
    from refinery.resources.lake import LakePaths

    paths = LakePaths(Path(root))
    ids, expected = new_day(days, n, redelivered)
    arrival = START + timedelta(days=days)
    started = time.perf_counter()
    if method == "index":
        found = set(prior_rows(paths, arrival, ids)["event_id"])
    else:  # read every earlier partition's event_ids, probe the day's ids against them
        parts = [p for d in paths.existing_partitions("silver", "events") if d < arrival.isoformat()
                 for p in paths.partition_parts("silver", "events", d)]
        found = set(
            pl.scan_parquet(parts).select("event_id")
            .filter(pl.col("event_id").is_in(ids.implode())).collect()["event_id"]
        )
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
    parser.add_argument("--naive-days", type=int, default=90,
                        help="longest history the naive method is run on (it reads every id)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="event-index-"))
    lengths = [int(d) for d in args.days.split(",")]
    print(f"work dir {work}; {args.events} events/day, {args.redelivered} re-deliveries")
    for days in sorted(lengths):  # one lake, grown to each history length in turn
        naive = days <= args.naive_days
        build(work, days, args.events)
        index = measure("index", work, days, args.events, args.redelivered, args.repeat)
        line = f"{days:4d} days: index {index['seconds']:6.2f} s, {index['peak_mb']:6.0f} MB peak"
        if naive:
            scan = measure("scan", work, days, args.events, args.redelivered, args.repeat)
            line += (f" | read all ids {scan['seconds']:6.2f} s, {scan['peak_mb']:6.0f} MB peak"
                     f" | {scan['seconds'] / index['seconds']:.1f}x")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
