"""SIGKILL inside bronze and silver: the lake stays readable by a plain glob with only committed
data, and a rerun, with no hand work, gives what an uninterrupted run gives.

Each scenario replaces a partition that already holds an older delivery (the hard case: a reader
must see the old partition whole until the new one is whole), killing the run at a named point
(`refinery.faults.kill_point`, a real SIGKILL of the run's process), then reruns it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from refinery.faults import KILL_ENV

pytestmark = pytest.mark.slow

DAY = "2026-10-02"
RUN = """
import sys
from dagster import AssetKey, materialize
from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.silver.assets import silver_assets
from refinery.resources import LakeResource, QualityPolicy

root, day = sys.argv[1], sys.argv[2]
result = materialize(
    [*bronze_assets, *silver_assets],
    selection=[AssetKey(["bronze", "events"]), AssetKey(["silver", "events"])],
    partition_key=day,
    resources={"lake": LakeResource(data_dir=root), "policy": QualityPolicy()},
    raise_on_error=False,
)
sys.exit(0 if result.success else 1)
"""
KILL_POINTS = [
    "bronze.after_part",
    "bronze.before_swap",
    "silver.start",
    "silver.after_parts",
    "silver.before_swap",
    "silver.between_swaps",
]


def run(root: Path, day: str, kill_at: str | None = None) -> int:
    env = {k: v for k, v in __import__("os").environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-c", RUN, str(root), day],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    ).returncode


def event(i: int, day: str) -> str:
    return json.dumps(
        {
            "event_id": f"{day}-{i}",
            "user_id": f"u{i % 7}",
            "event_type": "view",
            "event_time": f"{day}T{i % 24:02d}:00:00Z",
            "product_id": f"p{i % 5}",
            "device": "web",
        }
    )


def land(root: Path, day: str, name: str, lines: list[str]) -> None:
    path = root / "landing" / "events" / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def content(root: Path) -> dict[str, list]:
    """Every committed row of the lake, without the ingestion timestamp (which a rerun changes)."""
    out = {}
    for layer in ("bronze", "silver"):
        files = sorted((root / "lake" / layer / "events").glob("*/*.parquet"))
        frame = pl.read_parquet(files).drop("_ingested_at")
        out[layer] = sorted(frame.rows())
    quarantine = sorted((root / "lake" / "quarantine" / "events").glob("*/*.parquet"))
    out["quarantine"] = sorted(
        str(pl.read_parquet(f).drop("_ingested_at", strict=False).rows()) for f in quarantine
    )
    return out


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """A lake whose DAY holds the first delivery, and the reference after the second one."""
    base = tmp_path_factory.mktemp("base")
    land(base, DAY, "a.jsonl", [event(i, DAY) for i in range(300)])
    assert run(base, DAY) == 0
    first = content(base)
    reference = tmp_path_factory.mktemp("reference")
    shutil.copytree(base, reference, dirs_exist_ok=True)
    second_delivery(reference)
    assert run(reference, DAY) == 0
    return base, first, content(reference)


def second_delivery(root: Path) -> None:
    lines = [event(i, DAY) for i in range(300, 450)] + [event(5, DAY), "{broken"]
    land(root, DAY, "b.jsonl", lines)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_leaves_only_committed_data_and_a_rerun_completes(delivered, tmp_path, point):
    base, first, reference = delivered
    root = tmp_path / "lake"
    shutil.copytree(base, root)
    second_delivery(root)

    assert run(root, DAY, kill_at=point) == -signal.SIGKILL
    # what a reader sees now: the first delivery's partitions, whole (bronze/silver may each be
    # either the old or the new one, never a mixture, never a staging folder)
    seen = content(root)
    for layer in ("bronze", "silver"):
        assert seen[layer] in (first[layer], reference[layer]), layer
    glob = str(root / "lake" / "silver" / "events" / "*" / "*.parquet")
    rows = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)")
    assert rows.fetchall()[0][0] in (len(first["silver"]), len(reference["silver"]))
    assert not list((root / "lake").glob("*/events/.*"))

    assert run(root, DAY) == 0
    assert content(root) == reference
    staging = root / "lake" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())  # the rerun swept the leftovers


def test_sweep_deletes_the_staging_of_dead_runs_only(tmp_path):
    from refinery.resources.lake import LakePaths

    paths = LakePaths(tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mine = paths.staging_dir("silver", "events", DAY)
    alive = paths.staging / f"bronze.events.{DAY}.{__import__('os').getppid()}.x"
    dead = paths.staging / f"bronze.events.{DAY}.{gone}.y"
    stray = paths.staging / "something-else"
    for folder in (mine, alive, dead, stray):
        folder.mkdir(parents=True)
    assert sorted(paths.sweep_staging()) == sorted([dead, stray])
    assert mine.exists() and alive.exists()
