"""Bronze parsing speed: this tree's events parser against an earlier revision's, in one run.

The earlier parser is loaded from git at run time (`--against REV`). Both must give the same
bronze rows (every column, `_raw` and `_parse_detail` included) before anything is timed; then
each parses the same generated day (median of --repeat runs, wall and CPU seconds).
`--fault-rate` makes the generator write damaged lines too (they take the line-by-line path).

    uv run python -m bench.bench_bronze_parse --events 1000000 --against 02bc77c
    uv run python -m bench.bench_bronze_parse --events 1000000 --against 02bc77c --fault-rate 0.02

`--against fa02068` is the Polars-NDJSON-with-fallback parser the total one replaced; its
number texts differ ("17" for 17.0), so that comparison is made on typed amount and quantity.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

NDJSON_REV = "fa02068"


def old_ingest_module(repo: Path, revision: str):
    source = subprocess.check_output(
        ["git", "-C", str(repo), "show", f"{revision}:refinery/assets/bronze/ingest.py"], text=True
    )
    path = Path(tempfile.mkdtemp()) / "old_ingest.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_ingest", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_ingest"] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", default="02bc77c", help="git revision of the other parser")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    from refinery.assets.bronze import ingest as new
    from refinery.synth import SynthConfig, generate

    repo = Path(__file__).resolve().parents[1]
    old = old_ingest_module(repo, args.against)
    work = Path(tempfile.mkdtemp(prefix="bronze-bench-"))
    day = date(2026, 10, 1)
    generate(
        SynthConfig(
            start=day,
            days=1,
            users=max(args.events // 10, 100),
            events_per_day=args.events,
            seed=3,
            fault_rate=args.fault_rate,
        ),
        work,
    )
    files = sorted((work / "landing" / "events" / day.isoformat()).glob("*.jsonl*"))
    lines = sum(len(new.read_raw(f).data.splitlines()) for f in files)

    def parse(module):
        return pl.concat([module.bronze_events_from_file(f, f.name) for f in files])

    a, b = parse(old), parse(new)
    if args.against == NDJSON_REV:
        # numbers as silver reads them: Polars wrote the literal 17.0 as "17", later parsers "17.0"
        fields = ["_raw", *new.EVENT_FIELDS, "_parse_error", "_line"]
        typed = [pl.col("amount").cast(pl.Float64), pl.col("quantity").cast(pl.Int32)]
        a, b = a.select(fields).with_columns(typed), b.select(fields).with_columns(typed)
    assert a.equals(b), f"the parsers of {args.against} and this tree disagree"
    unparsed = b.get_column("_parse_error").is_not_null().sum()
    timings = {}
    for name, module in ((f"{args.against}", old), ("this tree", new)):
        walls, cpus = [], []
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            parse(module)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        timings[name] = (statistics.median(walls), statistics.median(cpus))
    print(
        f"{lines} lines in {len(files)} file(s), {unparsed} not parsed (fault rate "
        f"{args.fault_rate}); equal bronze rows: yes"
    )
    for name, (wall, cpu) in timings.items():
        print(
            f"  {name:12s} {wall:6.2f} s wall, {cpu:6.2f} s CPU, median of {args.repeat}  "
            f"({lines / wall / 1e6:.2f} M lines/s)"
        )
    (old_wall, _), (new_wall, _) = timings.values()
    print(f"  this tree / {args.against}: {new_wall / old_wall:.2f}x wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
