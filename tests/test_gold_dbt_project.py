"""The dbt manifest is prepared ahead of time (`make setup`: `dagster-dbt project
prepare-and-package`), re-parsed on load only under `dagster dev`, and a missing or stale one
fails the load naming the command; loading the code location never runs dbt otherwise.

Real dbt parses of a copy of the project; the code location loaded in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refinery.assets.gold.dbt_project import (
    DBT_PROJECT_DIR,
    GENERATED_DIRS,
    PARSE_DATA_DIR,
    ManifestNotPrepared,
    load_manifest,
    prepare_manifest,
    refinery_dbt_project,
)

REPO = Path(__file__).resolve().parents[1]


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns(*GENERATED_DIRS))
    return project


def manifest_models(manifest: Path) -> set[str]:
    nodes = json.loads(manifest.read_text())["nodes"].values()
    return {node["name"] for node in nodes if node["resource_type"] == "model"}


def later_than(path: Path, reference: Path) -> None:
    """Give `path` a modification time after `reference`'s (a coarse clock cannot tie them)."""
    after = reference.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(after, after))


def test_the_manifest_is_prepared_ahead_and_a_missing_or_stale_one_fails_the_load(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    monkeypatch.delenv("REFINERY_DATA_DIR", raising=False)  # parse needs no data root
    root = copy_project(tmp_path)
    project = refinery_dbt_project(root)

    with pytest.raises(ManifestNotPrepared, match="does not exist.*prepare-and-package"):
        load_manifest(project)
    assert not Path(project.manifest_path).exists()  # refusing ran no dbt

    manifest = prepare_manifest(project)
    assert load_manifest(project) == manifest
    assert "user_daily_features" in manifest_models(manifest)
    # what dbt itself writes later is no source: its anonymous user id (`.user.yml`, written
    # by the first dbt command on a fresh machine) leaves the manifest fresh
    user_file = root / ".user.yml"
    user_file.write_text("id: 00000000-0000-0000-0000-000000000000\n")
    later_than(user_file, manifest)
    assert load_manifest(project) == manifest
    # the packaged manifest names no machine's data root
    assert PARSE_DATA_DIR in manifest.read_text()
    assert str(REPO / "data") not in manifest.read_text()

    # a model added after the manifest was made: the load refuses, naming it and the command
    extra = root / "models" / "marts" / "extra_model.sql"
    extra.write_text("select 1 as one\n")
    later_than(extra, manifest)
    built = manifest.stat().st_mtime_ns
    with pytest.raises(ManifestNotPrepared, match=r"older than models/marts/extra_model\.sql"):
        load_manifest(project)
    with pytest.raises(ManifestNotPrepared, match="make setup"):
        load_manifest(project)
    assert manifest.stat().st_mtime_ns == built

    # under `dagster dev` the load re-parses, and the graph has the new model
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    assert load_manifest(project) == manifest
    assert "extra_model" in manifest_models(manifest)
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI")
    assert load_manifest(project) == manifest  # fresh again outside dev too


def tripwire_dbt(folder: Path, calls: Path) -> Path:
    """A `dbt` first on PATH that records every invocation and fails it, so nothing is written
    (`dbt --version`, which dagster-dbt asks before it invokes dbt, is answered by the real one)."""
    real = shutil.which("dbt")
    assert real, "dbt-core is installed in the project's environment"
    folder.mkdir()
    script = folder / "dbt"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'[ "$1" = "--version" ] && exec {real} --version\nexit 1\n'
    )
    script.chmod(0o755)
    return folder


def test_loading_the_code_location_runs_dbt_only_under_dagster_dev(tmp_path):
    calls = tmp_path / "dbt-calls.txt"
    bin_dir = tripwire_dbt(tmp_path / "bin", calls)
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    assert manifest.exists(), "make setup prepares the repo's manifest before the tests"
    before = manifest.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["REFINERY_DATA_DIR"] = str(tmp_path / "data")

    def load(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "from refinery.definitions import defs"],
            env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip

    loaded = load()
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert not calls.exists(), calls.read_text()
    assert manifest.stat().st_mtime_ns == before

    # the tripwire does see dbt: under `dagster dev` the load runs `dbt parse` (here it fails)
    in_dev = load(DAGSTER_IS_DEV_CLI="1")
    assert in_dev.returncode != 0
    assert any(call.startswith("parse --quiet --vars") for call in calls.read_text().splitlines())
    assert manifest.stat().st_mtime_ns == before
