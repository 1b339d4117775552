"""A gold run SIGKILLed at a named place, then rerun as it was, publishes what an uninterrupted
run publishes: no manual step (DuckDB's recovery and the incremental marts' delete-then-insert
of the run's dates make the rerun correct).

Each case: a fresh copy of the small silver lake (gold_fixtures), the real CLI
`dagster asset materialize --select group:gold --partition-range ...` in a subprocess with
REFINERY_KILL_AT (refinery/faults.py), the same command again without it, on the same Dagster
instance, and the exported Parquet compared by content hash with an uninterrupted run's.

The instance is the project's dagster.yaml without its pool limit: a SIGKILLed run keeps its
duckdb_warehouse slot (nothing marks a CLI run dead without the daemon's run monitoring), and the
rerun waits for it forever ("Step blocked by limit for pool duckdb_warehouse"). That is the
instance's business, reported to the lead; these tests are about the data.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from dagster import materialize

from refinery.assets.gold import dbt_resource, gold_assets
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths
from tests.gold_fixtures import FIRST_DAY, LAST_DAY, write_silver

pytestmark = pytest.mark.slow

LAST_KNOWLEDGE_DAY = date(2025, 1, 15)
PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"
CASES = ("gold.before_export", "gold.export_mid")


def gold_hashes(root: Path) -> dict[str, str]:
    """Every file under lake/gold (hidden ones too: a temp file left behind counts)."""
    gold = LakePaths(root).lake / "gold"
    return {
        str(path.relative_to(gold)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(gold.rglob("*"))
        if path.is_file()
    }


def cli_gold(root: Path, home: Path, kill_at: str | None = None):
    env = {**os.environ, "REFINERY_DATA_DIR": str(root), "DAGSTER_HOME": str(home)}
    env.pop("REFINERY_KILL_AT", None)
    if kill_at:
        env["REFINERY_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "dagster", "asset", "materialize"]
    command += ["-m", "refinery.definitions", "--select", "group:gold"]
    command += ["--partition-range", f"{FIRST_DAY}...{LAST_KNOWLEDGE_DAY}"]
    return subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def silver_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_silver")
    write_silver(root, until=LAST_DAY)
    return root


@pytest.fixture(scope="module")
def uninterrupted(silver_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_reference")
    shutil.copytree(silver_lake / "lake", root / "lake")
    tags = {
        "dagster/asset_partition_range_start": FIRST_DAY.isoformat(),
        "dagster/asset_partition_range_end": LAST_KNOWLEDGE_DAY.isoformat(),
    }
    resources = {"dbt": dbt_resource(), "lake": LakeResource(data_dir=str(root))}
    assert materialize(gold_assets, resources=resources, tags=tags).success
    hashes = gold_hashes(root)
    assert len(hashes) > 20
    return hashes


@pytest.mark.parametrize("kill_at", CASES)
def test_a_killed_gold_run_reruns_to_the_uninterrupted_result(
    kill_at, silver_lake, uninterrupted, tmp_path
):
    root, home = tmp_path / "data", tmp_path / "dagster_home"
    shutil.copytree(silver_lake / "lake", root / "lake")
    home.mkdir()
    instance_config = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text())
    instance_config["concurrency"].pop("pools")  # see the module docstring
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))

    killed = cli_gold(root, home, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "RUN_SUCCESS" not in killed.stderr + killed.stdout
    left = gold_hashes(root)
    if kill_at == "gold.export_mid":
        assert 0 < len(left) < len(uninterrupted)  # killed with some files written
    else:
        assert left == {}  # killed before anything was exported

    rerun = cli_gold(root, home)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # a process that ran dbt-duckdb exits without DuckDB's report of objects left alive
    assert "nanobind: leaked" not in rerun.stderr, rerun.stderr[-3000:]
    assert gold_hashes(root) == uninterrupted
