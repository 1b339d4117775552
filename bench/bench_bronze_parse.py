"""Bronze parsing speed: the total per-line parser against the one it replaced, in one run.

The old parser (git revision `fa02068`, loaded from git at run time) handed a whole chunk to
Polars' NDJSON reader and fell back to `json.loads` when a line was odd; its results depended on
neighbouring lines and one trailing comma failed the day. The new one decides each line alone.
On clean generated lines both must give the same bronze fields (checked first); then each is
timed (median of --repeat runs) on the same file.

    uv run python -m bench.bench_bronze_parse --events 1000000
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

OLD_REV = "fa02068"


def old_ingest_module(repo: Path):
    source = subprocess.check_output(
        ["git", "-C", str(repo), "show", f"{OLD_REV}:refinery/assets/bronze/ingest.py"], text=True
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
    args = parser.parse_args(argv)
    from refinery.assets.bronze import ingest as new
    from refinery.synth import SynthConfig, generate

    repo = Path(__file__).resolve().parents[1]
    old = old_ingest_module(repo)
    work = Path(tempfile.mkdtemp(prefix="bronze-bench-"))
    day = date(2026, 10, 1)
    generate(
        SynthConfig(
            start=day,
            days=1,
            users=max(args.events // 10, 100),
            events_per_day=args.events,
            seed=3,
            fault_rate=0.0,
        ),
        work,
    )
    files = sorted((work / "landing" / "events" / day.isoformat()).glob("*.jsonl*"))
    lines = sum(len(new.read_raw(f).data.splitlines()) for f in files)

    def parse(module):
        return pl.concat([module.bronze_events_from_file(f, f.name) for f in files])

    # numbers as silver reads them: Polars wrote the literal 17.0 as "17", the new parser "17.0"
    fields = ["_raw", *new.EVENT_FIELDS, "_parse_error", "_line"]
    typed = [pl.col("amount").cast(pl.Float64), pl.col("quantity").cast(pl.Int32)]
    a = parse(old).select(fields).with_columns(typed)
    b = parse(new).select(fields).with_columns(typed)
    assert a.equals(b), "old and new parsers disagree on clean lines"
    timings = {}
    for name, module in (("old (Polars NDJSON + fallback)", old), ("new (total, per line)", new)):
        runs = []
        for _ in range(args.repeat):
            started = time.process_time()  # CPU seconds: steadier than wall time on a shared box
            parse(module)
            runs.append(time.process_time() - started)
        timings[name] = statistics.median(runs)
    print(f"{lines} lines in {len(files)} file(s), equal bronze fields: yes")
    for name, seconds in timings.items():
        print(
            f"  {name:32s} {seconds:6.2f} s CPU, median of {args.repeat}  ({lines / seconds / 1e6:.2f} M lines/s)"
        )
    values = list(timings.values())
    print(f"  new / old: {values[1] / values[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
