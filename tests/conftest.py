"""Fixtures shared by the test files: temp data roots, Dagster instances and environments.

Every test works in temp dirs. Nothing here stands in for a component: a `dagster_home` is a
real instance directory seeded from the repo's own dagster_home/dagster.yaml, a data root is a
real (empty) directory the code writes its lake into.

Tiers: tests marked `slow` (a daemon, SIGKILLed subprocesses, the dbt graph run repeatedly)
are left out by `make test-fast` (`pytest -m "not slow"`); `make test` (CI) runs everything.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# before anything imports the code location: the session's DuckDB objects stay collectable,
# so the test process exits without DuckDB's leak report (refinery/definitions.py)
import duckdb  # noqa: F401
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_DAGSTER_YAML = REPO / "dagster_home" / "dagster.yaml"
REPO_DBT_TARGET = REPO / "dbt_project" / "target"


def seed_dagster_home(path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A DAGSTER_HOME at `path` holding the repo's dagster.yaml (what `make setup` seeds), with
    `edit(config)` applied first when a test needs another setting (a faster poll, no pools)."""
    path.mkdir(parents=True, exist_ok=True)
    if edit is None:
        shutil.copy(PROJECT_DAGSTER_YAML, path / "dagster.yaml")
    else:
        config = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text())
        edit(config)
        (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session", autouse=True)
def dbt_target_outside_the_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dagster-dbt puts every invocation's target dir (compiled SQL, run_results.json, logs)
    under $DBT_TARGET_PATH, default the project's own target/: tests send it to a temp dir, so
    no test writes into the repo's dbt_project/target. Subprocesses inherit it.

    The manifest the code location loads is still the repo's (`dbt parse` of `make setup`); dbt's
    partial-parse state is copied over, as dagster-dbt itself copies it per invocation."""
    target = tmp_path_factory.mktemp("dbt-target")
    partial_parse = REPO_DBT_TARGET / "partial_parse.msgpack"
    if partial_parse.exists():
        shutil.copy(partial_parse, target / partial_parse.name)
    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_TARGET_PATH", str(target))
    yield target
    patch.undo()


@pytest.fixture(scope="module")
def module_env() -> Iterator[pytest.MonkeyPatch]:
    """monkeypatch for module-scoped fixtures: what it sets holds for the module's tests and is
    undone after the last one."""
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def not_the_lake(tmp_path_factory: pytest.TempPathFactory, module_env: pytest.MonkeyPatch) -> Path:
    """REFINERY_DATA_DIR pointed at an empty directory for the module: code that should take its
    data root from a LakeResource and reads the environment instead finds nothing there (and
    what it writes shows up in it)."""
    empty = tmp_path_factory.mktemp("not-the-lake")
    module_env.setenv("REFINERY_DATA_DIR", str(empty))
    return empty


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data root for one test, exported as REFINERY_DATA_DIR (created on first write)."""
    root = tmp_path / "data"
    monkeypatch.setenv("REFINERY_DATA_DIR", str(root))
    return root


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real instance directory for one test, seeded from the repo's dagster_home/dagster.yaml
    (run queue, pools, run monitoring) and exported as DAGSTER_HOME, so `DagsterInstance.get()`,
    the dagster CLI and dagster-daemon in subprocesses all use it. For another config, call
    `seed_dagster_home(path, edit)` and export it yourself."""
    home = seed_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def git_without_global_config(
    tmp_path_factory: pytest.TempPathFactory, module_env: pytest.MonkeyPatch
) -> None:
    """A machine with no global or system git config (no identity): for the module's tests, git
    sees only what the repo itself configures."""
    missing = tmp_path_factory.mktemp("no-git-config") / "gitconfig"
    module_env.setenv("GIT_CONFIG_GLOBAL", str(missing))
    module_env.setenv("GIT_CONFIG_NOSYSTEM", "1")
