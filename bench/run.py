"""Benchmark refinery against the DuckDB floor, pandas and Evidently (`make bench`).

    uv run python -m bench.run [--sizes S,M,L] [--repeats 1] [--incremental 30,90] [--work DIR]
    uv run python -m bench.run --sizes "" --incremental 30,90   # only the add-a-day test
    uv run python -m bench.run --sizes XS --incremental ""      # smoke test of the harness

For each size it generates landing data with refinery-synth (clean: --fault-rate 0, so that the
hand-written floor and pandas, which do not validate, compute on the same rows), then:
1. runs the platform stage by stage through Dagster, each stage in its own process
   (`python -m bench.stage`), timing the runs from inside and reading the peak RSS;
2. runs the engine floor (bench/floor_fast.sql: events pre-aggregated per user, day and
   arrival before they meet the as-of dates), the naive SQL a team writes first
   (bench/floor.sql: every event x every as-of date) and the pandas way (bench/pandas_way.py, in
   bench/.venv-evidently, address space capped at --pandas-memory-gb);
3. checks that floor, naive SQL, pandas and refinery agree on every (user_id, as_of_date) key and every
   feature column of user_daily_features and training_examples, and only then reports times;
4. compares the drift report with Evidently's DataDriftPreset on the same frames.
Each repeat starts from an empty lake (landing data is reused). Results go to
<work>/results.json and a Markdown table on stdout; docs/BENCHMARKS.md records measured runs.

Sizes (issue #5; events per arrival day, about 10 per user per day):
  S  30 days x 100k events/day (3M events),   10,000 users
  M  30 days x 1M events/day (30M events),   100,000 users
  L  M's 30 days as history, then one arrival day of 10M events (the stages time that day);
     when M runs first in the same invocation, L builds on M's lake instead of rebuilding it
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from bench.compare import assert_same_features, read_gold
from bench.report import size_tables

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PEER_PYTHON = BENCH_DIR / ".venv-evidently" / "bin" / "python"
PEER_PACKAGES = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]
START = date(2025, 1, 1)
HISTORY_DAYS = 30
PLATFORM_STAGES = ("bronze", "silver", "gold", "training", "drift")
# 30 days give 20 labelled as-of dates: a window of 20 with one validation and one test date
# (gaps of 7 days) leaves four train dates; warm-up 0 because all 30 days are the window.
TRAINING_CONFIG = {
    "window_days": 20,
    "validation_days": 1,
    "test_days": 1,
    "feature_warmup_days": 0,
}


@dataclass(frozen=True)
class Size:
    name: str
    users: int
    events_per_day: int
    big_day_events: int = 0  # L: one more arrival day of this many events


SIZES = {
    "XS": Size("XS", users=200, events_per_day=2_000),  # smoke test of the harness only
    "S": Size("S", users=10_000, events_per_day=100_000),
    "M": Size("M", users=100_000, events_per_day=1_000_000),
    "L": Size("L", users=100_000, events_per_day=1_000_000, big_day_events=10_000_000),
}
ORDER = ("XS", "S", "M", "L")  # L can build on M's lake, so M runs first


def day(offset: int) -> date:
    return START + timedelta(days=offset)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (KiB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def tree_environment(tree: Path, env: dict | None = None) -> tuple[str, dict]:
    """The Python and environment a checkout's code runs with: its own `.venv` (its `make setup`,
    as it was installed) for another checkout, first on PATH too, because the gold asset starts
    `dbt` from PATH (without this an older tree's runs used this checkout's dbt)."""
    env = dict(os.environ if env is None else env)
    own = tree / ".venv" / "bin"
    if tree == REPO or not (own / "python").exists():
        return sys.executable, env
    env["PATH"] = f"{own}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(own.parent)
    return str(own / "python"), env


def run_measured(command: list[str], log: Path, env: dict | None = None, cwd: Path = REPO) -> dict:
    """Run a command as a child; return its wall time, exit code and peak RSS of its process tree.

    The peak is sampled every 0.2 s as the sum of VmRSS over the child and its descendants (dbt
    runs DuckDB in a grandchild). getrusage/wait4's ru_maxrss would be wrong here: Linux carries
    the parent's high-water mark over fork and exec, so every child would report at least this
    process's own size.
    """
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peak_kb = 0
        while process.poll() is None:
            peak_kb = max(peak_kb, tree_rss_kb(process.pid))
            time.sleep(0.2)
    return {
        "wall_seconds": round(time.perf_counter() - started, 3),
        "exit_code": process.returncode,
        "maxrss_mb": round(peak_kb / 1024, 1),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def synth(data_dir: Path, first_day: int, days: int, users: int, events_per_day: int) -> float:
    from refinery.synth import SynthConfig, generate
    from refinery.synth.config import DriftSettings

    started = time.perf_counter()
    generate(
        SynthConfig(
            start=START,
            first_day=first_day,
            days=days,
            users=users,
            events_per_day=events_per_day,
            seed=7,
            fault_rate=0.0,
            drift=DriftSettings.preset("covariate", START + timedelta(days=23)),
        ),
        data_dir,
    )
    return time.perf_counter() - started


def fresh_lake(data_dir: Path, home: Path) -> None:
    """Drop everything the platform wrote; keep the landing data."""
    for name in ("lake", "registry", "dvc-remote", "warehouse.duckdb", "warehouse.duckdb.wal"):
        target = data_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")


def platform_stage(
    stage: str,
    data_dir: Path,
    home: Path,
    first: date,
    last: date,
    logs: Path,
    tag: str,
    tree: Path = REPO,
) -> dict:
    """One stage in a fresh process; `tree`: the checkout whose code runs (another commit's
    worktree for a before/after comparison)."""
    out = logs / f"{tag}-{stage}.json"
    python, env = tree_environment(tree)
    measured = run_measured(
        [
            python, "-m", "bench.stage", stage,
            "--data-dir", str(data_dir), "--dagster-home", str(home),
            "--first", first.isoformat(), "--last", last.isoformat(),
            "--training-config", json.dumps(TRAINING_CONFIG), "--json", str(out),
        ],
        logs / f"{tag}-{stage}.log",
        env=env,
        cwd=tree,
    )  # fmt: skip
    if measured["exit_code"] != 0:
        tail = (logs / f"{tag}-{stage}.log").read_text()[-2000:]
        raise SystemExit(f"stage {stage} ({tag}) failed; log {logs}/{tag}-{stage}.log:\n{tail}")
    inner = read_json(out)
    return {
        "seconds": inner["seconds"],
        "import_seconds": inner["import_seconds"],
        "process_seconds": measured["wall_seconds"],
        "maxrss_mb": measured["maxrss_mb"],
        "maxrss_stage_process_mb": round(inner["maxrss_self_kb"] / 1024, 1),
        "maxrss_child_mb": round(inner["maxrss_children_kb"] / 1024, 1),
        "runs": len(inner["runs"]),
    }


def run_floor(
    landing: Path, out: Path, first: date, last: date, logs: Path, tag: str, algorithm: str
) -> dict:
    name = "floor" if algorithm == "preaggregated" else "naive_sql"
    measured = run_measured(
        [
            sys.executable, "-m", "bench.floor", "--landing", str(landing), "--out", str(out),
            "--min-date", first.isoformat(), "--max-date", last.isoformat(),
            "--algorithm", algorithm, "--json", str(logs / f"{tag}-{name}.json"),
        ],
        logs / f"{tag}-{name}.log",
    )  # fmt: skip
    if measured["exit_code"] != 0:
        # At L, floor.sql runs DuckDB out of its memory cap (it did at M before it had passes):
        # a result, reported as such.
        text = (logs / f"{tag}-{name}.log").read_text()
        status = "out_of_memory" if "Out of Memory" in text else "failed"
        say(f"  {name} {status}; see {logs}/{tag}-{name}.log")
        return {"status": status, "seconds": None, **measured}
    inner = read_json(logs / f"{tag}-{name}.json")
    return {
        **inner,
        "process_seconds": measured["wall_seconds"],
        "maxrss_mb": measured["maxrss_mb"],
    }


def ensure_peer_env() -> None:
    """bench/.venv-evidently: pandas<3 and Evidently 0.7 (git-ignored; PyPI via uv)."""
    if PEER_PYTHON.exists():
        return
    say("creating bench/.venv-evidently (Evidently 0.7 needs pandas<3)")
    venv = str(PEER_PYTHON.parent.parent)
    subprocess.run(["uv", "venv", venv, "--python", "3.11", "-q"], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", venv, *PEER_PACKAGES], check=True)


def run_pandas(
    landing: Path, out: Path, first: date, last: date, logs: Path, tag: str, memory_gb: float
) -> dict:
    measured = run_measured(
        [
            str(PEER_PYTHON), str(BENCH_DIR / "pandas_way.py"), "--landing", str(landing),
            "--out", str(out), "--min-date", first.isoformat(), "--max-date", last.isoformat(),
            "--memory-limit-gb", str(memory_gb), "--json", str(logs / f"{tag}-pandas.json"),
        ],
        logs / f"{tag}-pandas.log",
    )  # fmt: skip
    result_file = logs / f"{tag}-pandas.json"
    if result_file.exists():
        inner = read_json(result_file)
    else:
        tail = (logs / f"{tag}-pandas.log").read_text()[-300:]
        inner = {"status": "crashed", "detail": tail, "seconds": None}
        # pandas' JSON parser reports an exhausted address space as "Could not reserve memory"
        signs = ("MemoryError", "std::bad_alloc", "Cannot allocate", "Could not reserve memory")
        if any(sign in tail for sign in signs):
            inner["status"] = "out_of_memory"
    return {
        **inner,
        "process_seconds": measured["wall_seconds"],
        "maxrss_mb": measured["maxrss_mb"],
    }


def check_equal(lake_root: Path, other: Path, first: date, last: date, what: str) -> dict:
    """Floor or pandas vs refinery's gold marts; raises FeatureMismatch on any difference.

    The reference is what refinery's run over knowledge dates first..last wrote, as refinery
    itself counts the as-of dates (the label delay comes from dbt_project.yml, not a copy)."""
    from refinery.assets.gold.plan import as_of_dates_for

    checks = {}
    for model in ("user_daily_features", "training_examples"):
        dates = as_of_dates_for(model, first, last)
        candidate = pl.read_parquet(other / f"{model}.parquet")
        if dates[0] < history_start(lake_root) and candidate.height == 0:
            # the as-of dates precede the lake (a daily run's training examples, labelled
            # days after their date, on a short history): neither side has a row
            checks[model] = {"rows": 0, "columns": candidate.width}
            continue
        reference = read_gold(lake_root, model, dates[0], dates[-1])
        result = assert_same_features(reference, candidate, what=f"{what} {model}")
        checks[model] = {"rows": result.rows, "columns": result.columns}
    return checks


def history_start(lake_root: Path) -> date:
    """The first arrival date of the lake's silver events."""
    days = sorted((Path(lake_root) / "lake" / "silver" / "events").glob("date=*"))
    return date.fromisoformat(days[0].name.split("=")[1]) if days else date.max


def bench_size(
    size: Size, work: Path, repeats: int, pandas_gb: float, keep: bool, history: Path | None = None
) -> dict:
    """Benchmark one size. `history`: the data dir of a finished run of the same users and
    events per day (M for L), whose landing data and 30-day lake L builds on."""
    data_dir = work / size.name
    home = work / f"{size.name}-dagster-home"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict = {"size": size.name, "users": size.users, "events_per_day": size.events_per_day}

    first, last = day(0), day(HISTORY_DAYS - 1)
    if history is not None:
        say(f"{size.name}: building on the {HISTORY_DAYS}-day lake of {history.name}")
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        history.rename(data_dir)
        (history.parent / f"{history.name}-dagster-home").rename(home)
        result["history_from"] = history.name
    else:
        say(f"{size.name}: generating {HISTORY_DAYS} days x {size.events_per_day:,} events/day")
        result["synth_seconds"] = round(
            synth(data_dir, 0, HISTORY_DAYS, size.users, size.events_per_day), 1
        )
    if size.big_day_events:
        # history through the platform once (untimed), then the big day is what we measure
        if history is None:
            fresh_lake(data_dir, home)
            say(f"{size.name}: building the {HISTORY_DAYS}-day history through the platform")
            for stage in ("bronze", "silver", "gold"):
                platform_stage(stage, data_dir, home, first, last, logs, f"{size.name}-history")
        say(f"{size.name}: generating one arrival day of {size.big_day_events:,} events")
        result["synth_big_day_seconds"] = round(
            synth(data_dir, HISTORY_DAYS, 1, size.users, size.big_day_events), 1
        )
        first = last = day(HISTORY_DAYS)
    result["knowledge_dates"] = f"{first}..{last}"
    landing = data_dir / "landing"
    result["landing_mb"] = round(
        sum(p.stat().st_size for p in landing.rglob("*") if p.is_file()) / 2**20, 1
    )

    runs = []
    for repeat in range(repeats):
        tag = f"{size.name}-r{repeat}"
        if not size.big_day_events:  # L keeps its history; re-running the big day replaces it
            fresh_lake(data_dir, home)
        say(f"{size.name} repeat {repeat + 1}/{repeats}: platform stages")
        stages = {}
        for stage in PLATFORM_STAGES:
            if size.big_day_events and stage in ("training", "drift") and repeat > 0:
                continue
            stages[stage] = platform_stage(stage, data_dir, home, first, last, logs, tag)
            say(
                f"  {stage}: {stages[stage]['seconds']:.1f} s, peak {stages[stage]['maxrss_mb']} MB"
            )
        equal, floors = {}, {}
        for name, algorithm in (("floor", "preaggregated"), ("naive_sql", "naive")):
            say(f"{size.name} repeat {repeat + 1}/{repeats}: {name}")
            out = work / f"{tag}-{name}"
            floors[name] = run_floor(landing, out, first, last, logs, tag, algorithm)
            if floors[name]["seconds"] is not None:
                say(
                    f"  {name}: {floors[name]['seconds']:.1f} s, peak {floors[name]['maxrss_mb']} MB"
                )
                equal[name] = check_equal(data_dir, out, first, last, name)
        say(f"{size.name} repeat {repeat + 1}/{repeats}: pandas")
        pandas = run_pandas(landing, work / f"{tag}-pandas", first, last, logs, tag, pandas_gb)
        say(
            f"  pandas: {pandas.get('status')} {pandas.get('seconds')} s, peak {pandas['maxrss_mb']} MB"
        )
        if pandas.get("status") == "ok":
            equal["pandas"] = check_equal(data_dir, work / f"{tag}-pandas", first, last, "pandas")
        runs.append({"stages": stages, **floors, "pandas": pandas, "equal": equal})
        for other in ("floor", "naive_sql", "pandas"):
            shutil.rmtree(work / f"{tag}-{other}", ignore_errors=True)
    result["runs"] = runs

    if "drift" in runs[0]["stages"]:
        say(f"{size.name}: drift report vs Evidently")
        from bench.drift_vs_evidently import compare

        result["drift_vs_evidently"] = compare(data_dir, work / f"{size.name}-evidently")
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return result


def bench_incremental(history_days: int, work: Path, users: int, events_per_day: int) -> dict:
    """Build `history_days` through the platform, then time adding two more days, one by one."""
    tag = f"inc{history_days}"
    data_dir, home, logs = work / tag, work / f"{tag}-dagster-home", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    say(f"incremental: {history_days} days of history x {events_per_day:,} events/day")
    synth(data_dir, 0, history_days + 2, users, events_per_day)
    fresh_lake(data_dir, home)
    for stage in ("bronze", "silver"):
        platform_stage(stage, data_dir, home, day(0), day(history_days - 1), logs, f"{tag}-hist")
    platform_stage("gold", data_dir, home, day(0), day(history_days - 1), logs, f"{tag}-hist")
    added = []
    for offset in (history_days, history_days + 1):
        measured = platform_stage(
            "ingest", data_dir, home, day(offset), day(offset), logs, f"{tag}-{offset}"
        )
        added.append(measured)
        say(
            f"  add day {offset + 1}: {measured['seconds']:.1f} s (peak {measured['maxrss_mb']} MB)"
        )
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return {"history_days": history_days, "events_per_day": events_per_day, "added_days": added}


def import_overhead(work: Path) -> dict:
    data_dir, home = work / "imports", work / "imports-dagster-home"
    data_dir.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    fresh_lake(data_dir, home)
    return platform_stage("imports", data_dir, home, day(0), day(0), work / "logs", "imports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="S,M,L", help="comma-separated: S, M, L (default all)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--incremental",
        default="30,90",
        help="history lengths for the add-a-day test ('' to skip; default 30,90)",
    )
    parser.add_argument("--incremental-events-per-day", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/refinery-bench"))
    parser.add_argument("--pandas-memory-gb", type=float, default=12.0)
    parser.add_argument("--keep", action="store_true", help="keep generated data and lakes")
    args = parser.parse_args()

    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {unknown}; choose from {sorted(SIZES)}")
    sizes = sorted(set(sizes), key=ORDER.index)
    args.work.mkdir(parents=True, exist_ok=True)
    ensure_peer_env()
    os.environ.pop("DAGSTER_HOME", None)  # each stage process gets its own temp home

    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "command": " ".join(sys.argv),
    }
    say("import overhead of the code location")
    results["import_overhead"] = import_overhead(args.work)
    results["sizes"] = []
    for name in sizes:
        size = SIZES[name]
        reuse = "M" if name == "L" and "M" in sizes else None
        keep_data = args.keep or (name == "M" and "L" in sizes)
        history = args.work / reuse if reuse else None
        results["sizes"].append(
            bench_size(size, args.work, args.repeats, args.pandas_memory_gb, keep_data, history)
        )
        (args.work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if args.incremental:
        results["incremental"] = [
            bench_incremental(
                int(h),
                args.work,
                max(args.incremental_events_per_day // 10, 100),
                args.incremental_events_per_day,
            )
            for h in args.incremental.split(",")
        ]
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    for size in results["sizes"]:
        print("\n".join(size_tables(size)))
    say(f"results: {args.work / 'results.json'}; logs: {args.work / 'logs'}")


if __name__ == "__main__":
    main()
