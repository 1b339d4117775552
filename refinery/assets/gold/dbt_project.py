"""The dbt project as Dagster sees it: where it is, how its manifest is prepared (Dagster 1.13's
way), how its models and tests are named and described (GoldTranslator), the DuckDB settings of
its profile, and what is left of its invocations (target dirs, pruned).

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

Importing this module builds the `DbtProject` (it reads dbt_project.yml, a few hundred bytes)
and the translator, and nothing else. It must not import the `refinery.assets.gold` package: `dagster-dbt ...
--file` loads this file alone, before any manifest exists, and the package's wiring needs one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
)
from packaging import version

from refinery import settings
from refinery.dbt_in_process import in_process_dbt

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
PREPARE_COMMAND = (
    "make setup (or: uv run dagster-dbt project prepare-and-package "
    "--file refinery/assets/gold/dbt_project.py)"
)
# What makes the manifest stale when changed: the project's sources, not what dbt generates.
PROJECT_SOURCE_SUFFIXES = frozenset({".sql", ".yml", ".yaml", ".md", ".csv"})
GENERATED_DIRS = frozenset({"target", "logs", "dbt_packages"})
# `dbt parse` renders profiles.yml, whose warehouse path needs a data root, but opens no
# database; the data root of a run is a var of that run's `dbt build` (plan.dbt_build), which
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


class RefineryDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two fixed costs of every gold run (measured, with the
    re-used parse below: a daily run's dbt step outside dbt's own node times 9.7 → 3.8 s;
    docs/BENCHMARKS.md):

    - dagster-dbt learns the version of the dbt it runs by running `dbt --version` once per
      resource, that is once per run; that command imports dbt and asks PyPI for the latest
      dbt-core and adapter releases (~4 s, and the network). The dbt it runs is the `dbt` of
      this environment, the installed dbt-core, whose version its package metadata gives.
    - before each invocation it builds a dbt adapter in the run's own process (~1.9 s the first
      time in a process: dbt's config and adapter imports, the project's macros), used only by
      `fetch_row_counts()` and `fetch_column_metadata()`, which gold does not call. Without one
      the invocation is what dagster-dbt runs for dbt Fusion: the same command and events.
    - it runs dbt as a subprocess, which imports dbt, its adapter and DuckDB again; here dbt
      runs in the step's process (`cli` below, refinery/dbt_in_process.py), with the same events
      and artifacts.
    """

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None

    def cli(self, args: Sequence[str], **kwargs: Any):
        """dagster-dbt's invocation, with dbt run in this process (refinery/dbt_in_process.py):
        the subprocess imported dbt, its adapter and DuckDB again (~2.4 s of a daily run)."""
        with in_process_dbt():
            return super().cli(args, **kwargs)


def dbt_resource() -> DbtCliResource:
    return RefineryDbtCliResource(project_dir=dbt_project())


class ManifestNotPrepared(RuntimeError):
    """The dbt manifest is missing or older than the project: the gold asset graph cannot be
    trusted. The message names the command that prepares it."""


def project_files(project_dir: Path) -> list[Path]:
    """The project's source files (SQL, YAML, docs, seeds), not what dbt generated.

    Hidden files are not sources: dbt writes its anonymous user id to `.user.yml` in the
    profiles directory (this project's own) on the first command of a fresh machine, after the
    manifest was prepared."""
    files = []
    for path in project_dir.rglob("*"):
        relative = path.relative_to(project_dir)
        if relative.parts and relative.parts[0] in GENERATED_DIRS:
            continue
        if any(part.startswith(".") for part in relative.parts):
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


def duckdb_threads() -> int:
    """DuckDB's worker threads in dbt (REFINERY_DUCKDB_THREADS, default: the machine's cores).
    The marts do not depend on it (money is summed exactly); it only trades speed for cores."""
    return settings.DUCKDB_THREADS.get()


# dbt's DuckDB memory cap unless REFINERY_DUCKDB_MEMORY_LIMIT says otherwise; profiles.yml has the
# same default (a test keeps them equal). The marts are built from per-(user, day) aggregates
# (dbt_project/models/intermediate), never from events x as-of dates, so one build covers any run.
DEFAULT_DUCKDB_MEMORY_LIMIT = settings.DUCKDB_MEMORY_LIMIT.default


def memory_limit_gb(raw: str | None = None) -> float:
    """DuckDB's memory_limit of the dbt profile in GB (REFINERY_DUCKDB_MEMORY_LIMIT, default
    3GB), or of `raw`; a size DuckDB does not read raises, naming the variable."""
    if raw is None:
        return settings.size_gb(settings.DUCKDB_MEMORY_LIMIT.get())
    return settings.size_gb(
        settings.DUCKDB_MEMORY_LIMIT.get({settings.DUCKDB_MEMORY_LIMIT.env: raw})
    )


# dagster-dbt gives every invocation its own target/<op>-<run>-<uuid>/ (~3 MB of compiled SQL,
# run_results.json, the partial manifest); kept forever they grow without bound on a platform
# whose sensors run a build a day and whose backfills run several.
DEFAULT_DBT_TARGETS_KEPT = settings.DBT_TARGETS_KEPT.default


def targets_kept() -> int:
    """How many invocation target dirs of the gold op stay (REFINERY_DBT_TARGETS_KEPT)."""
    return settings.DBT_TARGETS_KEPT.get()


def prune_dbt_targets(latest: Path, keep: int) -> list[Path]:
    """Delete the invocation target dirs beside `latest` (same op, any run), all but the `keep`
    newest by modification time; `latest` itself always stays. Returns what was deleted.

    Another run's build in progress is among the newest, so it stays unless more than `keep`
    builds run at once (the warehouse pool lets one run).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the latest invocation's target stays), got {keep}")
    op_name = latest.name.rsplit("-", 2)[0]  # op names cannot contain "-"
    siblings = [
        path for path in latest.parent.glob(f"{op_name}-*-*") if path.is_dir() and path != latest
    ]
    siblings.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    removed = siblings[keep - 1 :]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# dbt keeps its parse of the project in <target>/partial_parse.msgpack and re-uses it when the
# project's files, --vars and profile are unchanged (else it parses everything again: ~3 s on
# 2 cores). Every invocation gets a new target dir, seeded by dagster-dbt with the parse of
# `make setup` (made with the placeholder data root, so never re-usable by a run). The parse of
# each run's --vars (one per lake: its data root and DuckDB threads) is kept here instead.
PARSE_FILE = "partial_parse.msgpack"
PARSES_KEPT = 8


def target_root(project_dir: Path) -> Path:
    """Where dbt's invocations write: $DBT_TARGET_PATH, else the project's target/ (as
    dagster-dbt decides it)."""
    root = Path(os.environ.get("DBT_TARGET_PATH", "target"))
    return root if root.is_absolute() else Path(project_dir) / root


def invocation_target(project_dir: Path, context: AssetExecutionContext) -> Path:
    """A new target dir for one dbt invocation of the op, named as dagster-dbt names them
    (<op>-<run>-<uuid>, what prune_dbt_targets matches)."""
    name = f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    return target_root(project_dir) / name


def parse_cache(project_dir: Path, vars_arg: str) -> Path:
    """Where the parse of the project under these --vars is kept between invocations."""
    digest = hashlib.sha256(vars_arg.encode()).hexdigest()[:16]
    return target_root(project_dir) / "parses" / f"{digest}.msgpack"


@contextmanager
def reused_parse(project_dir: Path, target: Path, vars_arg: str) -> Iterator[None]:
    """Seed the invocation's `target` with the last parse under the same --vars, and keep the
    parse it wrote for the next one. dbt checks what it is given (dbt's version, the vars, the
    profile, every file's checksum) and re-parses what changed, so a stale or foreign parse costs
    time, never correctness. Kept parses are replaced atomically; the PARSES_KEPT newest stay."""
    cache = parse_cache(project_dir, vars_arg)
    target.mkdir(parents=True, exist_ok=True)
    if cache.exists():
        shutil.copyfile(cache, target / PARSE_FILE)
    try:
        yield
    finally:
        written = target / PARSE_FILE
        if written.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(f".{cache.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
            shutil.copyfile(written, partial)
            os.replace(partial, cache)
            kept = sorted(
                cache.parent.glob("*.msgpack"), key=lambda path: path.stat().st_mtime, reverse=True
            )
            for old in kept[PARSES_KEPT:]:
                old.unlink(missing_ok=True)


class GoldTranslator(DagsterDbtTranslator):
    """Models become gold/<model>; the silver sources are the silver assets the lead defines."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey(["silver", dbt_resource_props["name"]])
        return AssetKey(["gold", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "gold"

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        """dbt's tests as checks, each described in words (a test's `meta.description` wins):
        what it asserts, on which columns, and on which rows (its `where`)."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        test = manifest["nodes"].get(unique_id, {})
        return spec._replace(description=describe_dbt_test(test))


_TEST_WORDS = {
    "not_null": "no null {columns}",
    "unique": "{columns} unique",
    "unique_combination_of_columns": "one row per ({columns})",
    "accepted_values": "{columns} only one of {values}",
    "accepted_range": "{columns} within [{min_value}, {max_value}]",
    "relationships": "every {columns} exists in {to}",
}


def describe_dbt_test(test: Mapping[str, Any]) -> str:
    """A sentence for a dbt generic test from its manifest node."""
    metadata = test.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    columns = kwargs.get("combination_of_columns") or [test.get("column_name") or ""]
    words = {
        "columns": ", ".join(c for c in columns if c) or "the rows",
        "values": ", ".join(str(v) for v in kwargs.get("values") or []),
        "min_value": kwargs.get("min_value", "-inf"),
        "max_value": kwargs.get("max_value", "inf"),
        "to": str(kwargs.get("to", "")).replace("ref(", "").strip("()'\" "),
    }
    name = metadata.get("name") or test.get("name", "test")
    sentence = _TEST_WORDS.get(name, name.replace("_", " ") + " on {columns}").format(**words)
    where = (test.get("config") or {}).get("where")
    rows = " (rows of the run's dates)" if where else ""
    severity = (test.get("config") or {}).get("severity", "error").lower()
    blocks = "; blocks the marts when it fails" if severity == "error" else ""
    return f"dbt test: {sentence}{rows}{blocks}."


gold_translator = GoldTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)
