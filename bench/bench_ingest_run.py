"""What one daily `ingest_job` run costs, split up, and a 30-day bronze + silver backfill as one
run against 30 runs, side by side.

1. Daily run: one arrival date of `--events` events (synth), `ingest_job` (bronze, silver, gold,
   online store) in a fresh child process on a persistent instance. The split comes from the
   run's own event timestamps in the instance: import (the child's `import refinery.definitions`),
   each step's start → success, dbt start-up and queries (the dbt step minus the node times in
   its `run_results.json`, and those node times), checks (dbt tests' node times, plus the
   Pandera contract checks re-timed on the written bronze and silver partitions), and Dagster
   (the run's wall time minus its steps).
2. Backfill: `--days` dates of `--backfill-events` events; bronze and silver (all six assets)
   over the range as one run (`BackfillPolicy.single_run()`) and as one run per date, each in a
   fresh lake (landing copied), median of `--repeat`.

    nice -n 10 uv run python -m bench.bench_ingest_run --events 100000 --days 30 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 9, 1)

DAILY = r"""
import json, sys, time
t0 = time.perf_counter()
import refinery.definitions as d
imported = time.perf_counter() - t0
from dagster import DagsterInstance
instance = DagsterInstance.get()
t1 = time.time()
result = d.defs.resolve_job_def("ingest_job").execute_in_process(
    instance=instance, partition_key=sys.argv[1], raise_on_error=False)
wall = time.time() - t1
print(json.dumps({"import": imported, "wall": wall, "run_id": result.run_id,
                  "success": result.success}))
"""

BACKFILL = r"""
import json, sys, time
from dagster import DagsterInstance, materialize
from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.silver.assets import silver_assets
from refinery.resources import LakeResource, QualityPolicy
root, first, last, mode = sys.argv[1:5]
from datetime import date, timedelta
instance = DagsterInstance.ephemeral()
assets = [*bronze_assets, *silver_assets]
resources = {"lake": LakeResource(data_dir=root), "policy": QualityPolicy()}
t = time.perf_counter()
if mode == "one":
    ok = materialize(assets, instance=instance, resources=resources, raise_on_error=False, tags={
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last}).success
else:
    ok, d = True, date.fromisoformat(first)
    while d <= date.fromisoformat(last):
        ok &= materialize(assets, instance=instance, resources=resources, partition_key=d.isoformat(),
                          raise_on_error=False).success
        d += timedelta(days=1)
print(json.dumps({"seconds": time.perf_counter() - t, "success": ok,
                  "runs": len(instance.get_run_records())}))
"""


def synth(root: Path, days: int, events: int) -> None:
    from refinery.synth import SynthConfig, generate

    generate(
        SynthConfig(
            start=START,
            days=days,
            users=max(events // 20, 100),
            events_per_day=events,
            seed=3,
            fault_rate=0.0,
        ),
        root,
    )


def child(code: str, *args: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_times(instance, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType

    starts, spans = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            spans[event.step_key] = record.timestamp - starts[event.step_key]
    return spans


def contract_seconds(root: Path, day: str) -> float:
    """The Pandera contract checks of bronze and silver, re-run on the written partitions."""
    from refinery.assets.metadata import contract_check
    from refinery.contracts.bronze import BRONZE_CONTRACTS
    from refinery.contracts.silver import CONTRACTS
    from refinery.resources.lake import LakePaths

    paths, t = LakePaths(root), time.perf_counter()
    for layer, contracts in (("bronze", BRONZE_CONTRACTS), ("silver", CONTRACTS)):
        for table, contract in contracts.items():
            contract_check(
                paths.partition_parts(layer, table, day),
                contract,
                check_name="contract",
                asset_key=None,
                blocking=True,
            )
    return time.perf_counter() - t


def daily(events: int, work: Path) -> dict:
    from dagster import DagsterInstance

    root, home = work / "daily", work / "daily_home"
    home.mkdir(parents=True)
    synth(root, 1, events)
    env = {**os.environ, "REFINERY_DATA_DIR": str(root), "DAGSTER_HOME": str(home)}
    run = child(DAILY, START.isoformat(), env=env)
    assert run["success"], run
    with DagsterInstance.from_config(str(home)) as instance:
        steps = step_times(instance, run["run_id"])
    results = sorted(
        (REPO / "dbt_project" / "target").glob(f"*-{run['run_id'][:7]}-*/run_results.json")
    )
    nodes = [r for f in results for r in json.loads(f.read_text())["results"]]
    tests = sum(r["execution_time"] for r in nodes if r["unique_id"].startswith("test."))
    queries = sum(r["execution_time"] for r in nodes if not r["unique_id"].startswith("test."))
    dbt_step = sum(
        s for k, s in steps.items() if k.startswith("gold") and not k.endswith("_contract")
    )
    contracts = contract_seconds(root, START.isoformat())
    split = {
        "import": run["import"],
        "dagster": run["wall"] - sum(steps.values()),
        "bronze": sum(s for k, s in steps.items() if k.startswith("bronze")),
        "silver": sum(s for k, s in steps.items() if k.startswith("silver")),
        # the dbt step outside dbt's node times: dbt's process start, manifest, adapter, the
        # gate's check look-ups, dagster-dbt's event stream, the Parquet export of the marts
        "dbt start-up": dbt_step - queries - tests,
        "dbt queries": queries,
        "checks (dbt tests)": tests,
        "checks (Pandera contracts, inside bronze/silver)": contracts,
        "checks (gold Parquet contracts)": sum(
            s for k, s in steps.items() if k.endswith("_contract")
        ),
        "online": sum(s for k, s in steps.items() if k.startswith("online")),
        "run wall": run["wall"],
    }
    return {"split": split, "steps": steps}


def backfill(days: int, events: int, repeat: int, work: Path) -> dict:
    landing = work / "landing_src"
    synth(landing, days, events)
    first, last = START.isoformat(), (START + timedelta(days=days - 1)).isoformat()
    out: dict[str, list] = {"one": [], "per_date": []}
    for i in range(repeat):
        for mode in ("one", "per_date"):
            root = work / f"bf_{mode}_{i}"
            shutil.copytree(landing / "landing", root / "landing")
            r = child(BACKFILL, str(root), first, last, mode, env={**os.environ})
            assert r["success"], r
            out[mode].append(r)
            shutil.rmtree(root)
    return {
        m: {
            "median_s": statistics.median(x["seconds"] for x in v),
            "runs": v[0]["runs"],
            "all_s": [round(x["seconds"], 2) for x in v],
        }
        for m, v in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--backfill-events", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        work = Path(tmp)
        result = {
            "daily": daily(args.events, work),
            "backfill": backfill(args.days, args.backfill_events, args.repeat, work),
            "args": vars(args) | {"out": str(args.out)},
        }
    print(json.dumps(result, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
