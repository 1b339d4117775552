"""What one daily `ingest_job` run costs, split up, and a 30-day bronze + silver backfill as one
run against 30 runs, side by side.

1. Daily runs: `--history` arrival dates of `--events` events (synth) are ingested first
   (bronze → gold in one run, untimed), then each of the next `--daily` dates is one
   `ingest_job` run (bronze, silver, gold, online store, drift report) in a fresh child process
   on a persistent instance (the repo's `dagster_home/dagster.yaml`, as `make setup` installs
   it), as the landing sensor starts it. With `--old-tree DIR` (a checkout
   with its own `make setup`), the same days run through that tree too, in its own lake and
   instance, alternating day by day. The split comes from each run's own event timestamps in
   the instance: import (the child's `import refinery.definitions`),
   each step's start → success, dbt start-up and queries (the dbt step minus the node times in
   its `run_results.json`, and those node times), checks (dbt tests' node times, plus the
   Pandera contract checks re-timed on the written bronze and silver partitions), and Dagster
   (the run's wall time minus its steps). Beside each daily run, the floor for that day
   (`bench.floor`, pre-aggregated, from the landing files of every date up to it: the day's
   knowledge date from scratch) runs in a fresh process of its own, its output equality-checked
   against the marts the run wrote before its time is kept; both sides are timed as whole
   processes (interpreter start and imports included), and the ratio is refinery's / the floor's.
2. Backfill: `--days` dates of `--backfill-events` events; bronze and silver (all six assets)
   over the range as one run (`BackfillPolicy.single_run()`) and as one run per date, each in a
   fresh lake (landing copied), median of `--repeat`.

    nice -n 10 uv run python -m bench.bench_ingest_run --events 100000 --days 30 --repeat 3
    uv run python -m bench.bench_ingest_run --events 100000 --history 7 --daily 3 --days 0 \
        --old-tree OLD      # OLD: git worktree add OLD <commit>; cd OLD; make setup
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

from bench.run import REPO, check_equal, run_measured, tree_environment

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

HISTORY = r"""
import json, sys
from dagster import DagsterInstance
import refinery.definitions as d
first, last = sys.argv[1:3]
job = d.defs.resolve_job_def("ingest_job")
selection = [k for k in job.asset_layer.selected_asset_keys if k.path[0] != "ml"]
result = job.execute_in_process(instance=DagsterInstance.get(), asset_selection=selection,
    tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    raise_on_error=False)
print(json.dumps({"success": result.success}))
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


def child(code: str, *args: str, env: dict, tree: Path = REPO) -> dict:
    """Run `code` in a fresh interpreter of `tree`; its last stdout line (JSON), with the
    process's whole wall time as `process_seconds`."""
    python, env = tree_environment(tree, env)
    started = time.perf_counter()
    out = subprocess.run(
        [python, "-c", code, *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) | {
        "process_seconds": time.perf_counter() - started
    }


def floor_for_day(root: Path, day: str, work: Path) -> dict:
    """The floor for one knowledge date from the landing files, as a whole process, checked
    equal to the marts refinery's run wrote for that date."""
    out, log = work / f"floor-{day}", work / f"floor-{day}.log"
    measured = run_measured(
        [
            sys.executable, "-m", "bench.floor", "--landing", str(root / "landing"),
            "--out", str(out), "--min-date", day, "--max-date", day, "--source", "landing",
            "--json", str(work / f"floor-{day}.json"),
        ],
        log,
    )  # fmt: skip
    if measured["exit_code"] != 0:
        raise SystemExit(f"floor for {day} failed: {log.read_text()[-2000:]}")
    the_day = date.fromisoformat(day)
    check_equal(root, out, the_day, the_day, f"floor for {day}")
    shutil.rmtree(out)
    inner = json.loads((work / f"floor-{day}.json").read_text())
    return {"process_seconds": measured["wall_seconds"], "inside_seconds": inner["seconds"]}


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


def daily(events: int, history: int, days: int, work: Path, trees: dict[str, Path]) -> dict:
    """`history` dates ingested in one run, then `days` daily runs per tree, alternating."""
    landing = work / "daily_landing"
    synth(landing, history + days, events)
    lakes = {}
    for name, tree in trees.items():
        root, home = work / f"daily_{name}", work / f"daily_{name}_home"
        home.mkdir(parents=True)
        # the instance the product runs on (`make setup` copies it into $DAGSTER_HOME), not
        # Dagster's default: each tree's own dagster.yaml, if it has one
        if (tree / "dagster_home" / "dagster.yaml").exists():
            shutil.copy(tree / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        shutil.copytree(landing / "landing", root / "landing")
        env = {**os.environ, "REFINERY_DATA_DIR": str(root), "DAGSTER_HOME": str(home)}
        # each run reads only its own dates' landing: the later days can be there already
        last = (START + timedelta(days=history - 1)).isoformat()
        assert child(HISTORY, START.isoformat(), last, env=env, tree=tree)["success"]
        lakes[name] = (root, home, env)
    runs: dict[str, list] = {name: [] for name in trees}
    for i in range(days):
        day = (START + timedelta(days=history + i)).isoformat()
        for name, tree in trees.items():
            root, home, env = lakes[name]
            runs[name].append(one_daily_run(tree, root, home, env, day))
        # the floor once per day (the trees' lakes hold the same landing data and marts)
        root = lakes["this"][0]
        floor = floor_for_day(root, day, work)
        for name in trees:
            run = runs[name][-1]
            run["split"]["floor for the day (process)"] = floor["process_seconds"]
            run["split"]["refinery / floor"] = run["split"]["process"] / floor["process_seconds"]
    return {
        name: {
            "median": {
                part: statistics.median(run["split"][part] for run in tree_runs)
                for part in tree_runs[0]["split"]
            },
            "runs": tree_runs,
        }
        for name, tree_runs in runs.items()
    }


def one_daily_run(tree: Path, root: Path, home: Path, env: dict, day: str) -> dict:
    from dagster import DagsterInstance

    run = child(DAILY, day, env=env, tree=tree)
    assert run["success"], run
    with DagsterInstance.from_config(str(home)) as instance:
        steps = step_times(instance, run["run_id"])
    results = sorted(
        (tree / "dbt_project" / "target").glob(f"*-{run['run_id'][:7]}-*/run_results.json")
    )
    nodes = [r for f in results for r in json.loads(f.read_text())["results"]]
    tests = sum(r["execution_time"] for r in nodes if r["unique_id"].startswith("test."))
    queries = sum(r["execution_time"] for r in nodes if not r["unique_id"].startswith("test."))
    dbt_step = sum(
        s for k, s in steps.items() if k.startswith("gold") and not k.endswith("_contract")
    )
    contracts = contract_seconds(root, day)
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
        "drift report": sum(s for k, s in steps.items() if k.startswith("ml")),
        "run wall": run["wall"],
        # the child's whole process: interpreter start, import, instance, run, teardown
        "process": run["process_seconds"],
    }
    return {"day": day, "split": split, "steps": steps}


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
    parser.add_argument("--history", type=int, default=7, help="dates before the daily runs")
    parser.add_argument("--daily", type=int, default=3, help="daily runs per tree")
    parser.add_argument("--old-tree", type=Path, default=None, help="also run the daily runs here")
    parser.add_argument("--days", type=int, default=30, help="backfill dates (0: no backfill)")
    parser.add_argument("--backfill-events", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        work = Path(tmp)
        result = {
            "daily": daily(
                args.events,
                args.history,
                args.daily,
                work,
                {"this": REPO, **({"old": args.old_tree.resolve()} if args.old_tree else {})},
            ),
            "backfill": (
                backfill(args.days, args.backfill_events, args.repeat, work) if args.days else None
            ),
            "args": vars(args) | {"out": str(args.out)},
        }
    print(json.dumps(result, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
