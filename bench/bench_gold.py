"""Gold against its honest floor, before against after, and the cost of adding a day.

    uv run python -m bench.bench_gold backfill --data-dir DIR --first D --last D [--old-tree T]
        [--generate [--events-per-day N --users N]] [--naive]
    uv run python -m bench.bench_gold add-a-day --history 30,90,365 [--events-per-day N]

backfill: DIR holds landing files and a silver lake built from them (bench.run builds one; keep it
with --keep). Each repeat starts gold from nothing (no warehouse, no gold files) and times, side
by side: refinery's gold stage over [first, last] in one run (bench.stage gold, a fresh process);
with --old-tree (a git worktree of an earlier commit), the same stage on that commit's code; the
pre-aggregated floor (bench/floor_fast.sql) from silver's Parquet (what gold reads) and from the
landing files; the naive SQL (bench/floor.sql). Every output is equality-checked against
refinery's marts (bench/compare.py) before a time is printed.

add-a-day: for each history length H, a generated silver lake of H + 1 days (generated straight
as Parquet, not through bronze: gold only reads silver), gold over the first H days in one run
(untimed), then the timed gold run of day H + 1, and the floor's cost for the same day.

Results: JSON on stdout (and --json FILE); docs/BENCHMARKS.md records runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from bench.run import REPO, check_equal, platform_stage, run_measured

FIRST = date(2025, 1, 1)


def say(text: str) -> None:
    print(f"[gold {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def reset_gold(data_dir: Path) -> None:
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (data_dir / name).unlink(missing_ok=True)
    shutil.rmtree(data_dir / "lake" / "gold", ignore_errors=True)


def floor(data_dir: Path, out: Path, first: date, last: date, logs: Path, tag: str,
          algorithm: str, source: str) -> dict:  # fmt: skip
    name = f"{tag}-floor-{algorithm}-{source}"
    measured = run_measured(
        [
            sys.executable, "-m", "bench.floor", "--landing", str(data_dir / "landing"),
            "--out", str(out), "--min-date", first.isoformat(), "--max-date", last.isoformat(),
            "--algorithm", algorithm, "--source", source, "--json", str(logs / f"{name}.json"),
        ],
        logs / f"{name}.log",
    )  # fmt: skip
    if measured["exit_code"] != 0:
        raise SystemExit(f"floor {name} failed: {(logs / f'{name}.log').read_text()[-2000:]}")
    inner = json.loads((logs / f"{name}.json").read_text())
    return {"seconds": inner["seconds"], "maxrss_mb": measured["maxrss_mb"]}


def gold_stage(data_dir: Path, work: Path, first: date, last: date, tag: str, tree: Path) -> dict:
    home = work / f"{tag}-home"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return platform_stage("gold", data_dir, home, first, last, work / "logs", tag, tree=tree)


def gold_files(data_dir: Path) -> dict[str, bytes]:
    gold = data_dir / "lake" / "gold"
    return {str(p.relative_to(gold)): p.read_bytes() for p in sorted(gold.rglob("*.parquet"))}


def backfill(args) -> dict:
    data_dir, work = args.data_dir.resolve(), args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    if args.generate:
        if data_dir.exists():
            shutil.rmtree(data_dir)
        days = (last - FIRST).days + 1
        say(f"writing a generated silver lake: {days} days x {args.events_per_day:,} events")
        write_silver(data_dir, days, args.events_per_day, args.users, seed=1)
    rows: dict[str, list[dict]] = {}

    def record(name: str, result: dict) -> None:
        rows.setdefault(name, []).append(result)
        say(f"  {name}: {result['seconds']:.1f} s, peak {result['maxrss_mb']} MB")

    for repeat in range(args.repeats):
        say(f"repeat {repeat + 1}/{args.repeats}")
        if args.old_tree:
            reset_gold(data_dir)
            record(
                "gold (before)",
                gold_stage(data_dir, work, first, last, f"old{repeat}", args.old_tree),
            )
            before = gold_files(data_dir)
        reset_gold(data_dir)
        record("gold (after)", gold_stage(data_dir, work, first, last, f"new{repeat}", REPO))
        if args.old_tree:
            after = gold_files(data_dir)
            assert before == after, "gold before and after differ: not the same marts"
            say("  gold before == gold after, byte for byte")
        sources = ["silver"] + (["landing"] if (data_dir / "landing").is_dir() else [])
        for algorithm, source in (("preaggregated", source) for source in sources):
            out = work / f"floor-{algorithm}-{source}"
            record(f"floor {algorithm} from {source}",
                   floor(data_dir, out, first, last, work / "logs", f"r{repeat}", algorithm, source))  # fmt: skip
            check_equal(data_dir, out, first, last, f"floor {algorithm} {source}")
            shutil.rmtree(out, ignore_errors=True)
        if repeat == 0 and args.naive and "landing" in sources:
            out = work / "floor-naive"
            record("naive SQL from landing",
                   floor(data_dir, out, first, last, work / "logs", "r0", "naive", "landing"))  # fmt: skip
            check_equal(data_dir, out, first, last, "naive SQL")
            shutil.rmtree(out, ignore_errors=True)
    return {
        "knowledge_dates": f"{first}..{last}",
        "medians": {
            name: {
                "seconds": round(statistics.median(r["seconds"] for r in results), 1),
                "maxrss_mb": max(r["maxrss_mb"] for r in results),
                "runs": len(results),
                "all_seconds": [round(r["seconds"], 1) for r in results],
            }
            for name, results in rows.items()
        },
    }


def write_silver(data_dir: Path, days: int, events_per_day: int, users: int, seed: int) -> None:
    """A silver lake of `days` arrival days, written as silver writes it (contract columns,
    `date=<A>/part-0.parquet`): ~10 events per active user, 8 % of events one to three days
    late, sessions, a 2,000-product catalogue whose categories move now and then, one users
    and one products snapshot a day."""
    rng = np.random.default_rng(seed)
    lake = data_dir / "lake" / "silver"
    kinds = np.array(["view", "click", "add_to_cart", "purchase"])
    devices = np.array(["web", "ios", "android"])
    categories = np.array(["toys", "games", "books", "garden", "home", "sport"])
    ingested = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(days):
        arrival = FIRST + timedelta(days=offset)
        n = events_per_day
        late = np.where(rng.random(n) < 0.08, rng.integers(1, 4, n), 0)
        late = np.minimum(late, offset)
        seconds = rng.integers(0, 86_400, n)
        base = datetime.combine(arrival, datetime.min.time(), UTC)
        kind = kinds[rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])]
        user = rng.integers(0, users, n)
        frame = pl.DataFrame(
            {
                "event_id": [f"{offset}-{i}" for i in range(n)],
                "user_id": [f"u{u}" for u in user],
                "event_type": kind,
                "event_time": pl.Series(
                    int(base.timestamp()) * 1_000_000 + seconds * 1_000_000 - late * 86_400_000_000
                ).cast(pl.Datetime("us", "UTC")),
                "product_id": [f"p{p}" for p in rng.integers(0, 2_000, n)],
                "amount": np.where(kind == "purchase", np.round(rng.uniform(1, 200, n), 2), np.nan),
                "quantity": rng.integers(1, 4, n).astype(np.int32),
                "device": devices[rng.integers(0, 3, n)],
                "session_id": [f"s{u}-{(offset - d) // 2}" for u, d in zip(user, late)],
                "arrival_date": [arrival] * n,
                "_source_file": [f"landing/events/{arrival}/events.jsonl"] * n,
                "_line": np.arange(1, n + 1),
                "_ingested_at": [ingested] * n,
            }
        ).with_columns(pl.col("amount").fill_nan(None))
        part = lake / "events" / f"date={arrival}" / "part-0.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(part)
        catalogue = pl.DataFrame(
            {
                "product_id": [f"p{p}" for p in range(2_000)],
                "category": categories[
                    (np.arange(2_000) + (offset // 30) * (np.arange(2_000) % 7 == 0)) % 6
                ],
                "brand": ["acme"] * 2_000,
                "list_price": np.round(10 + np.arange(2_000) % 90, 2).astype(float),
                "active": [True] * 2_000,
                "snapshot_date": [arrival] * 2_000,
            }
        )
        crm = pl.DataFrame(
            {
                "user_id": [f"u{u}" for u in range(users)],
                "signup_date": [date(2024, 1, 1)] * users,
                "country": ["DE"] * users,
                "birth_year": (1960 + np.arange(users) % 40).astype(np.int32),
                "marketing_opt_in": (np.arange(users) % 2 == 0),
                "plan": np.array(["free", "plus", "pro"])[np.arange(users) % 3],
                "snapshot_date": [arrival] * users,
            }
        )
        for table, snapshot in (("products", catalogue), ("users", crm)):
            path = lake / table / f"date={arrival}" / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.write_parquet(path)


def add_a_day(args) -> dict:
    work = args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    results = {}
    for history in (int(h) for h in args.history.split(",")):
        data_dir = work / f"history-{history}"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        say(f"history {history} days x {args.events_per_day:,} events: writing silver")
        write_silver(data_dir, history + 1, args.events_per_day, args.users, seed=history)
        say("  gold over the history (one run, untimed)")
        built = gold_stage(
            data_dir, work, FIRST, FIRST + timedelta(days=history - 1), f"h{history}", REPO
        )
        say(f"  history built in {built['seconds']:.1f} s, peak {built['maxrss_mb']} MB")
        day = FIRST + timedelta(days=history)
        added, floors = [], []
        for repeat in range(args.repeats):
            added.append(gold_stage(data_dir, work, day, day, f"h{history}-add{repeat}", REPO))
            say(f"  add day {history + 1}: {added[-1]['seconds']:.1f} s")
            out = work / f"h{history}-floor"
            floors.append(floor(data_dir, out, day, day, work / "logs", f"h{history}-{repeat}",
                                "preaggregated", "silver"))  # fmt: skip
            check_equal(data_dir, out, day, day, "floor")
            shutil.rmtree(out, ignore_errors=True)
        results[history] = {
            "history_backfill_seconds": round(built["seconds"], 1),
            "history_backfill_maxrss_mb": built["maxrss_mb"],
            "add_a_day_seconds": round(statistics.median(a["seconds"] for a in added), 1),
            "add_a_day_all_seconds": [round(a["seconds"], 1) for a in added],
            "add_a_day_maxrss_mb": max(a["maxrss_mb"] for a in added),
            "floor_for_the_day_seconds": round(statistics.median(f["seconds"] for f in floors), 1),
        }
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("backfill")
    one.add_argument("--data-dir", type=Path, required=True)
    one.add_argument("--first", required=True)
    one.add_argument("--last", required=True)
    one.add_argument("--old-tree", type=Path)
    one.add_argument("--naive", action="store_true", help="also time bench/floor.sql (slow)")
    one.add_argument(
        "--generate",
        action="store_true",
        help="write a generated silver lake into --data-dir first (from 2025-01-01 to --last)",
    )
    one.add_argument("--events-per-day", type=int, default=100_000)
    one.add_argument("--users", type=int, default=10_000)
    two = sub.add_parser("add-a-day")
    two.add_argument("--history", default="30,90,365")
    two.add_argument("--events-per-day", type=int, default=100_000)
    two.add_argument("--users", type=int, default=10_000)
    two.add_argument("--keep", action="store_true")
    for p in (one, two):
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--work", type=Path, default=Path("/tmp/refinery-bench-gold"))
        p.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = backfill(args) if args.command == "backfill" else add_a_day(args)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
