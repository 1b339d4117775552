"""The dbt project as Dagster sees it, and how its manifest is prepared (Dagster 1.13's way).

The asset graph of gold comes from dbt's target/manifest.json. It is made ahead of time, not when
the code location loads:

- `make setup` runs `dagster-dbt project prepare-and-package --file refinery/assets/gold/dbt_project.py`
  (PREPARE_COMMAND): dagster-dbt finds `DBT_PROJECT` below and runs its preparer (`dbt parse`).
  The project has no packaged copy (no `packaged_project_dir`: the code location runs from the
  repo), so "package" is a no-op here.
- `dagster dev` (`make dev`) re-parses on every load (`DbtProject.prepare_if_dev()`, called by
  `load_manifest`), so an edited model shows up on Reload.
- Anything else that loads the code location (`dagster asset materialize`, the daemon, a run
  worker, tests) reads the prepared manifest and never runs dbt at import. A missing manifest,
  or one older than a SQL/YAML file of the project, fails the load with ManifestNotPrepared,
  naming the command to run: a model edited after `make setup` must not load as the old graph.

Importing this module builds the `DbtProject` (it reads dbt_project.yml, a few hundred bytes),
and nothing else. It must not import the `refinery.assets.gold` package: `dagster-dbt ...
--file` loads this file alone, before any manifest exists, and the package's wiring needs one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
PREPARE_COMMAND = (
    "make setup (or: uv run dagster-dbt project prepare-and-package "
    "--file refinery/assets/gold/dbt_project.py)"
)
# What makes the manifest stale when changed: the project's sources, not what dbt generates.
PROJECT_SOURCE_SUFFIXES = frozenset({".sql", ".yml", ".yaml", ".md", ".csv"})
GENERATED_DIRS = frozenset({"target", "logs", "dbt_packages"})
# `dbt parse` renders profiles.yml, whose warehouse path needs a data root, but opens no
# database; the data root of a run is a var of that run's `dbt build` (dbt_build_args), which
# re-renders everything. So the manifest is parsed against this placeholder, never against
# whichever data root the preparing shell had: the prepared manifest is the same on every machine.
PARSE_DATA_DIR = "/data-root-is-passed-to-each-dbt-build"


def vars_arg(values: Mapping[str, Any]) -> str:
    """dbt's --vars argument: one line of flow-style YAML."""
    return yaml.safe_dump(dict(values), default_flow_style=True, width=10_000).strip()


PARSE_ARGS: Sequence[str] = ("parse", "--quiet", "--vars", vars_arg({"data_dir": PARSE_DATA_DIR}))


def refinery_dbt_project(project_dir: Path) -> DbtProject:
    """A DbtProject over `project_dir` (the repo's, or a test's copy) prepared with PARSE_ARGS;
    profiles.yml lives in the project."""
    return DbtProject(
        project_dir=project_dir, profiles_dir=project_dir, prepare_project_cli_args=PARSE_ARGS
    )


DBT_PROJECT = refinery_dbt_project(DBT_PROJECT_DIR)
"""The repo's dbt project: what `dagster-dbt project prepare-and-package --file` prepares."""


def dbt_project() -> DbtProject:
    return DBT_PROJECT


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project())


class ManifestNotPrepared(RuntimeError):
    """The dbt manifest is missing or older than the project: the gold asset graph cannot be
    trusted. The message names the command that prepares it."""


def project_files(project_dir: Path) -> list[Path]:
    """The project's source files (SQL, YAML, docs, seeds), not what dbt generated."""
    files = []
    for path in project_dir.rglob("*"):
        relative = path.relative_to(project_dir)
        if relative.parts and relative.parts[0] in GENERATED_DIRS:
            continue
        if path.suffix in PROJECT_SOURCE_SUFFIXES and path.is_file():
            files.append(path)
    return sorted(files)


def newer_than_manifest(project: DbtProject) -> list[Path]:
    """The project files modified after the manifest was written (all of them if it is missing)."""
    manifest = Path(project.manifest_path)
    files = project_files(Path(project.project_dir))
    if not manifest.exists():
        return files
    built_at = manifest.stat().st_mtime_ns
    return [path for path in files if path.stat().st_mtime_ns > built_at]


def manifest_is_stale(project: DbtProject) -> bool:
    return not Path(project.manifest_path).exists() or bool(newer_than_manifest(project))


def prepare_manifest(project: DbtProject | None = None) -> Path:
    """Prepare `project` now (`dbt parse`, what `dagster-dbt project prepare-and-package` runs),
    whatever the state of its manifest; returns the manifest's path. For a test's copy of the
    project, or a script; the code location itself never calls it."""
    project = project or dbt_project()
    project.preparer.prepare(project)
    return Path(project.manifest_path)


def load_manifest(project: DbtProject | None = None) -> Path:
    """The manifest the gold assets are built from, at code-location load.

    Under `dagster dev` the project is parsed first (`prepare_if_dev`); anywhere else the
    prepared manifest is read as it is, and a missing or stale one raises ManifestNotPrepared.
    """
    project = project or dbt_project()
    project.prepare_if_dev()
    manifest = Path(project.manifest_path)
    if not manifest.exists():
        raise ManifestNotPrepared(
            f"the dbt manifest {manifest} does not exist: the gold assets are built from it. "
            f"Prepare the dbt project with {PREPARE_COMMAND}. "
            "(`dagster dev` / `make dev` prepare it on every load.)"
        )
    newer = newer_than_manifest(project)
    if newer:
        names = ", ".join(str(p.relative_to(project.project_dir)) for p in newer[:3])
        more = f" and {len(newer) - 3} more" if len(newer) > 3 else ""
        raise ManifestNotPrepared(
            f"the dbt manifest {manifest} is older than {names}{more}: loading it would give an "
            f"asset graph that does not match the SQL on disk. Re-prepare the dbt project with "
            f"{PREPARE_COMMAND}. (`dagster dev` / `make dev` prepare it on every load.)"
        )
    return manifest


@functools.cache
def dbt_project_vars() -> Mapping[str, Any]:
    with open(DBT_PROJECT_DIR / "dbt_project.yml") as project_file:
        return yaml.safe_load(project_file)["vars"]
