"""Dagster's SQLite instance storage against refinery's pooled one (refinery/instance_storage.py).

    uv run python -m bench.bench_instance_storage [--events 300] [--days 12] [--repeats 3]

Two measurements, each run for both storages in alternation, every repeat in a fresh instance
directory (the repo's dagster.yaml; Dagster's storage is the same file without its
`instance_class`):
1. `events`: N partitioned asset materializations reported to the instance (what a run does for
   each asset partition), ms per event. Before any time is printed, both instances must hold the
   same events (type, asset, partition, metadata) in the same order.
2. `history`: the demo's bronze + silver backfill of D days (20,000 events a day, one Dagster
   run, `execute_in_process`), seconds; both must write the same silver rows (every column but
   `_ingested_at` and `_source_file`, which name the run's time and data dir).
Prints one JSON object; each timing in its own process, so imports are not counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STORAGES = ("dagster", "pooled")
START = date(2026, 9, 19)


def seed_home(home: Path, storage: str) -> None:
    import yaml

    home.mkdir(parents=True)
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    if storage == "dagster":
        del config["instance_class"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def child_events(home: str, n: int) -> None:
    import time

    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    instance = DagsterInstance.from_config(home)
    instance.report_runless_asset_event(AssetMaterialization("warm_up"))
    started = time.perf_counter()
    for i in range(n):
        instance.report_runless_asset_event(
            AssetMaterialization("a", partition=f"p{i}", metadata={"i": i})
        )
    seconds = time.perf_counter() - started
    records = instance.fetch_materializations(AssetKey("a"), limit=n + 1, ascending=True).records
    content = [
        (r.partition_key, r.asset_materialization.metadata["i"].value, r.event_log_entry.message)
        for r in records
    ]
    digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()
    print(json.dumps({"seconds": seconds, "digest": digest, "rows": len(content)}))


def child_history(home: str, data: str, days: int) -> None:
    import time

    os.environ["DAGSTER_HOME"] = home
    os.environ["REFINERY_DATA_DIR"] = data
    from refinery.demo import Plan, ingest_history

    started = time.perf_counter()
    ingest_history(Plan(history_days=days), START)
    seconds = time.perf_counter() - started
    import polars as pl

    # the same rows, less the two lineage columns that name this run's time and data dir
    silver = Path(data) / "lake" / "silver"
    digest = hashlib.sha256()
    for path in sorted(silver.rglob("*.parquet")):
        frame = pl.read_parquet(path)
        frame = frame.drop([c for c in ("_ingested_at", "_source_file") if c in frame.columns])
        digest.update(str(path.relative_to(silver)).encode())
        digest.update(frame.write_ipc(None).getvalue())
    print(json.dumps({"seconds": seconds, "digest": digest.hexdigest()}))


def in_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_instance_storage", "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def synth(data: Path, days: int) -> None:
    """The demo's own data (refinery.demo.synth: its users, traffic, faults and seed)."""
    from refinery.demo import Plan
    from refinery.demo import synth as demo_synth

    os.environ["REFINERY_DATA_DIR"] = str(data)
    demo_synth(Plan(history_days=days), START, 0, days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "events":
            child_events(rest[0], int(rest[1]))
        else:
            child_history(rest[0], rest[1], int(rest[2]))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-instance-"))
    landing = work / "landing-source"
    synth(landing, args.days)
    results: dict[str, dict[str, list[float]]] = {
        s: {"events": [], "history": []} for s in STORAGES
    }
    for repeat in range(args.repeats):
        digests: dict[str, set[str]] = {"events": set(), "history": set()}
        for storage in STORAGES:
            home = work / f"r{repeat}-{storage}-events"
            seed_home(home, storage)
            out = in_child("events", str(home), str(args.events))
            assert out["rows"] == args.events, out
            digests["events"].add(out["digest"])
            results[storage]["events"].append(out["seconds"] / args.events * 1000)

            home, data = work / f"r{repeat}-{storage}-home", work / f"r{repeat}-{storage}-data"
            seed_home(home, storage)
            shutil.copytree(landing / "landing", data / "landing")
            out = in_child("history", str(home), str(data), str(args.days))
            digests["history"].add(out["digest"])
            results[storage]["history"].append(out["seconds"])
        for what, seen in digests.items():
            if len(seen) != 1:
                raise SystemExit(f"repeat {repeat}: the two storages differ in {what}: {seen}")
        print(f"repeat {repeat + 1}: equal; {json.dumps(results)}", file=sys.stderr)
    summary = {
        "events_per_run": args.events,
        "history_days": args.days,
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
        "median": {
            s: {k: round(statistics.median(v), 2) for k, v in results[s].items()} for s in STORAGES
        },
        "samples": {
            s: {k: [round(x, 2) for x in v] for k, v in results[s].items()} for s in STORAGES
        },
    }
    print(json.dumps(summary, indent=1))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
