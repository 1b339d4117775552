"""Bronze and silver backfills, this tree against an earlier one, on the same landing files.

    uv run python -m bench.bench_lake --data-dir DIR --first D --last D --old-tree T
        [--repeats N] [--per-date] [--json FILE]

DIR holds landing files (bench.run or `python -m refinery.synth` writes them). Each repeat, for
each tree (the order alternates between repeats), starts from an empty lake and Dagster home and
runs bronze over [first, last], then silver, each through Dagster in a fresh process
(`bench.stage bronze-backfill` / `silver-backfill`: one run over the range, as a UI backfill or
`dagster asset materialize --partition-range` starts it; `--per-date`: one run per date, as the
landing sensor does). The trees' lakes must hold the same rows (bronze, silver, quarantine and
duplicates of every table and date, in order; `_ingested_at` aside) before any time is printed.

T is a git worktree of an earlier commit with its own `make setup`. Results: JSON on stdout (and
--json FILE); docs/BENCHMARKS.md records runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from bench.run import REPO, fresh_lake, platform_stage

LAYERS = ("bronze", "silver", "quarantine")
TABLES = ("events", "users", "products")


def say(text: str) -> None:
    print(f"[lake {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def lake_digest(lake: Path) -> dict[str, list]:
    """(rows, hash of the rows in order) of each layer/table/date/file family, `_ingested_at`
    (the wall clock of the run) left out."""
    digest: dict[str, list] = {}
    for layer in LAYERS:
        for table in TABLES:
            base = lake / layer / table
            if not base.is_dir():
                continue
            for day in sorted(base.iterdir()):
                files = sorted(day.glob("*.parquet"), key=lambda f: (len(f.name), f.name))
                for family in sorted({f.name.split("-")[0].split(".")[0] for f in files}):
                    chosen = [f for f in files if f.name.split("-")[0].split(".")[0] == family]
                    frame = pl.read_parquet(chosen)
                    frame = frame.drop([c for c in frame.columns if c == "_ingested_at"])
                    rows = frame.hash_rows(seed=0).to_list() if frame.height else []
                    digest[f"{layer}/{table}/{day.name}/{family}"] = [
                        frame.height,
                        hash(tuple(rows)) if rows else 0,
                        frame.columns,
                    ]
    return digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--first", type=date.fromisoformat, required=True)
    parser.add_argument("--last", type=date.fromisoformat, required=True)
    parser.add_argument("--old-tree", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--per-date", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/refinery-bench-lake"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    home = args.work / "dagster_home"
    suffix = "" if args.per_date else "-backfill"
    trees = [("before", args.old_tree.resolve()), ("after", REPO)]
    results: dict[str, dict[str, list]] = {tag: {"bronze": [], "silver": []} for tag, _ in trees}
    digests: dict[str, dict] = {}
    for repeat in range(args.repeats):
        order = trees if repeat % 2 == 0 else trees[::-1]
        for tag, tree in order:
            fresh_lake(args.data_dir, home)
            for layer in ("bronze", "silver"):
                say(f"repeat {repeat + 1}: {tag} {layer}")
                measured = platform_stage(
                    layer + suffix, args.data_dir, home, args.first, args.last, args.work,
                    f"{tag}-{repeat}", tree=tree,
                )  # fmt: skip
                results[tag][layer].append(measured)
                say(f"  {measured['seconds']:.1f} s, peak {measured['maxrss_mb']:.0f} MB")
            digest = lake_digest(args.data_dir / "lake")
            if tag in digests and digests[tag] != digest:
                raise SystemExit(f"{tag}: two repeats of the same tree wrote different lakes")
            digests[tag] = digest
    before, after = digests["before"], digests["after"]
    if before != after:
        differing = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        raise SystemExit(f"the trees' lakes differ in {len(differing)} place(s): {differing[:8]}")
    say(f"lakes equal: {len(after)} layer/table/date files, same rows in the same order")
    summary = {}
    for tag, layers in results.items():
        summary[tag] = {
            layer: {
                "seconds": [r["seconds"] for r in runs],
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "peak_mb": max(r["maxrss_mb"] for r in runs),
            }
            for layer, runs in layers.items()
        }
        summary[tag]["bronze+silver_median_seconds"] = round(
            summary[tag]["bronze"]["median_seconds"] + summary[tag]["silver"]["median_seconds"], 3
        )
    report = {
        "data_dir": str(args.data_dir),
        "first": args.first.isoformat(),
        "last": args.last.isoformat(),
        "runs": "one run per date" if args.per_date else "one run over the range",
        "old_tree": str(args.old_tree),
        "repeats": args.repeats,
        "equal_files": len(after),
        "summary": summary,
        "raw": results,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
