"""Deduplication against all of history at 1M events a day: the straight scan of every earlier
silver partition (`event_index.scan_prior_rows`, the reference) against the fingerprint LSM with
its row sidecars (`event_index.prior_rows`), side by side at 30, 90 and 365 days of history, in
one run.

One lake is grown day by day to each history length, as silver grows it: every day a silver
events partition of `--events` rows written as Parquet, then `refresh` adds it to the index and
writes its row sidecar (each add is timed: its mean is the amortised cost of adding a day, its
maximum the worst-case merge). Then one new day of `--events` ids, `--redelivered` of them
re-deliveries, is looked up. Two placements of the re-deliveries: `recent` (from the last 7 days:
producer retries) and `uniform` (spread over the whole history: a hit in every partition, the
case where reading the hit partitions costs as much as the scan; the sidecars make it cost what
the number of hits costs). Each answer is checked first (index rows == scan rows, found ids ==
the re-delivered ids), then each variant is timed: median of --repeat runs, each in a fresh child
process whose VmHWM is its peak memory. Also reported: bytes an event on disk of silver, the
index runs and the sidecars. Run it niced, in one run, on a shared box:

    nice -n 10 uv run python -m bench.bench_event_index --events 1000000 --days 30,90,365 \
        --work /tmp/ei
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
    """A silver events partition (ids `ev-<day>-<row>`)."""
    arrival = START + timedelta(days=day)
    return pl.DataFrame({"i": pl.int_range(n, eager=True)}).select(
        event_id=pl.format(
            "ev-{}-{}", pl.lit(f"{day:04d}"), pl.col("i").cast(pl.String).str.zfill(8)
        ),
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


def build(root: Path, days: int, n: int) -> list[float]:
    """Grow the lake to `days` partitions, indexing each as it lands; the add times (s) of the
    days added now (earlier runs' are in root/adds.json)."""
    from refinery.assets.silver import event_index
    from refinery.resources.lake import LakePaths, write_parquet_atomic

    paths = LakePaths(root)
    log = root / "adds.json"
    adds = json.loads(log.read_text()) if log.exists() else []
    for d in range(len(adds), days):
        target = paths.partition_dir("silver", "events", (START + timedelta(days=d)).isoformat())
        write_parquet_atomic(silver_day(d, n), target / "part-0.parquet")
        started = time.perf_counter()
        event_index.refresh(paths)
        adds.append(time.perf_counter() - started)
        log.write_text(json.dumps(adds))
    return adds[:days]


def new_day(days: int, n: int, redelivered: int, where: str, seed: int = 7):
    rng = np.random.default_rng(seed)
    low = max(0, days - 7) if where == "recent" else 0
    old_days = rng.integers(low, days, redelivered)
    old_rows = rng.integers(0, n, redelivered)
    again = {f"ev-{d:04d}-{r:08d}" for d, r in zip(old_days, old_rows)}
    fresh = [f"new-{i:08d}" for i in range(n - len(again))]
    return pl.Series("event_id", [*fresh, *sorted(again)]), again


def peak_mb() -> float:
    """This process's own peak RSS (VmHWM starts afresh at exec; ru_maxrss keeps the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, where: str, root: str, days: int, n: int, redelivered: int) -> None:
    from refinery.assets.silver import event_index
    from refinery.resources.lake import LakePaths

    paths = LakePaths(Path(root))
    ids, expected = new_day(days, n, redelivered, where)
    arrival = START + timedelta(days=days)
    if method == "check":
        index = event_index.prior_rows(paths, arrival, ids, update=False)
        scan = event_index.scan_prior_rows(paths, arrival, ids)
        ok = index.equals(scan) and set(index["event_id"]) == expected
        print(json.dumps({"seconds": 0, "peak_mb": 0, "correct": ok}))
        return
    started = time.perf_counter()
    if method == "scan":
        found = event_index.scan_prior_rows(paths, arrival, ids)
    else:
        found = event_index.prior_rows(paths, arrival, ids, update=False)
    seconds = time.perf_counter() - started
    peak = peak_mb()
    print(
        json.dumps(
            {"seconds": seconds, "peak_mb": peak, "correct": set(found["event_id"]) == expected}
        )
    )


def measure(method, where, root, days, n, redelivered, repeat) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.check_output(
            [
                sys.executable,
                "-m",
                "bench.bench_event_index",
                "--child",
                method,
                where,
                str(root),
                str(days),
                str(n),
                str(redelivered),
            ],
            text=True,
        )
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["correct"] for r in runs), f"{method}/{where} found the wrong rows at {days} days"
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_mb": max(r["peak_mb"] for r in runs),
    }


def disk(work: Path, days: int, n: int) -> dict:
    """On-disk bytes per event: silver's Parquet, the index runs, the row sidecars."""

    def size(base: Path, pattern: str) -> int:
        return sum(p.stat().st_size for p in base.glob(pattern) if p.is_file())

    index = work / "lake/.index/silver-events"
    events = days * n
    silver = size(work / "lake/silver/events", "*/part-*.parquet")
    runs = size(index, "run-*.npy")
    sidecars = size(index, "rows/*/*.rows")
    return {
        "silver_bytes_per_event": silver / events,
        "runs_bytes_per_event": runs / events,
        "sidecar_bytes_per_event": sidecars / events,
        "index_mb": (runs + sidecars) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", default="30,90,365")
    parser.add_argument("--redelivered", type=int, default=15_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="event-index-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"work dir {work}; {args.events} events/day, {args.redelivered} re-deliveries", flush=True
    )
    for days in sorted(int(d) for d in args.days.split(",")):
        adds = build(work, days, args.events)
        for where in ("recent", "uniform"):
            measure("check", where, work, days, args.events, args.redelivered, 1)
        scan = measure("scan", "uniform", work, days, args.events, args.redelivered, args.repeat)
        res = {
            w: measure("index", w, work, days, args.events, args.redelivered, args.repeat)
            for w in ("recent", "uniform")
        }
        print(
            json.dumps(
                {
                    "days": days,
                    "scan": scan,
                    "index": res,
                    "add_mean_s": statistics.mean(adds),
                    "add_median_s": statistics.median(adds),
                    "add_max_s": max(adds),
                    "add_last_s": adds[-1],
                    **disk(work, days, args.events),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
