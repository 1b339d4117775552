"""Publishes SIGKILLed at every step, then rerun: the registry ends as if nothing happened.

Each fault test starts from the same registry (version 1 published), publishes in a
subprocess with REFINERY_KILL_AT naming one kill point (a real SIGKILL there), reruns without
it, and compares the registry with an uninterrupted publish's: the same commits (tree and
message, in order), the same tags and annotations, clean working tree, the same files in the
remote, and every version restorable byte-identical from a fresh clone (remote only).
Everything runs at one path (`work/`), so absolute remote URLs are the same in every run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from refinery.assets.ml.splits import WrittenTrainingSet
from refinery.datasets import checkout, read_metadata
from refinery.resources.lake import LakePaths, write_parquet_atomic
from refinery.resources.registry import (
    LOCK_FILE,
    DvcRegistry,
    RegistryError,
    exclusive_lock,
    git,
    version_tags,
)
from tests.test_datasets_cli import START, write_gold_day
from tests.test_registry import md5s_of, training_set

pytestmark = pytest.mark.slow

PUBLISH = """
import logging, sys
from pathlib import Path
from refinery.resources.registry import DvcRegistry
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
registry = DvcRegistry(registry_dir=sys.argv[1], remote_url=sys.argv[2])
print(registry.snapshot(Path(sys.argv[3]), lineage=sys.argv[4]).tag, flush=True)
"""

MATERIALIZE = """
import json, logging, sys
from dagster import DagsterInstance, materialize
from refinery.assets.ml.training_dataset import training_dataset
from refinery.resources import LakeResource
from refinery.resources.registry import DvcRegistry
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
result = materialize(
    [training_dataset],
    instance=DagsterInstance.ephemeral(),
    resources={"lake": LakeResource(data_dir=sys.argv[1]), "dvc_registry": DvcRegistry()},
    run_config={"ops": {"ml__training_dataset": {"config": {"window_days": int(sys.argv[2])}}}},
)
[event] = result.asset_materializations_for_node("ml__training_dataset")
metadata = {k: v.value for k, v in event.metadata.items() if k in (
    "version_tag", "content_md5", "new_version", "window")}
print(json.dumps({"run_id": result.run_id, **metadata}), flush=True)
"""

KILLED = -signal.SIGKILL


@dataclass
class Lab:
    root: Path
    builds: dict[int, WrittenTrainingSet]
    template: Path  # work/ with version 1 (build 1) published to work/dvc-remote
    expected: dict[str, dict]  # uninterrupted fingerprints

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def repo(self) -> Path:
        return self.work / "registry"

    def remote(self, name: str = "dvc-remote") -> Path:
        return self.work / name

    def reset(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self.template, self.work, symlinks=True)

    def registry(self, remote: str = "dvc-remote") -> DvcRegistry:
        return DvcRegistry(registry_dir=str(self.repo), remote_url=str(self.remote(remote)))


def lineage(seed: int) -> str:
    return f"build {seed}"


def publish_in_subprocess(
    lab: Lab, seed: int, kill_at: str | None = None, remote: str = "dvc-remote"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REFINERY_KILL_AT"}
    if kill_at:
        env["REFINERY_KILL_AT"] = kill_at
    args = [str(lab.repo), str(lab.remote(remote)), str(lab.builds[seed].directory), lineage(seed)]
    return subprocess.run(
        [sys.executable, "-c", PUBLISH, *args], check=False, capture_output=True, text=True, env=env
    )


def fingerprint(repo: Path, remotes: list[Path]) -> dict:
    """Everything that must be equal to an uninterrupted publish's (no timestamps, no hashes
    of commits: trees and messages are content, commit ids also hash the time)."""
    history = git(repo, "log", "--reverse", "--format=%T%x1f%B%x1e", "HEAD")
    tags = {}
    for number, tag in version_tags(repo).items():
        tags[tag] = {
            "annotation": git(repo, "tag", "-l", "--format=%(contents)", tag),
            "tree": git(repo, "rev-parse", f"{tag}^{{tree}}"),
            "message": git(repo, "log", "-1", "--format=%B", tag),
            "content_md5": read_metadata(number, repo)["content_md5"],
        }
    return {
        "history": [entry.strip("\n") for entry in history.split("\x1e") if entry.strip()],
        "tags": tags,
        "status": git(repo, "status", "--porcelain"),
        "working_data": md5s_of(repo / "datasets" / "training_set"),
        "remotes": {
            remote.name: sorted(
                str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file()
            )
            for remote in remotes
            if remote.exists()
        },
    }


def assert_restorable(lab: Lab, tmp_path: Path, versions: dict[int, int]) -> None:
    """Every version (number -> build seed) restores byte-identical from a clone, via the remote."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(lab.repo), str(clone)], check=True)
    for number, seed in versions.items():
        dest = checkout(number, tmp_path / f"v{number}", registry=clone)
        assert md5s_of(dest) == lab.builds[seed].file_md5s, f"v{number}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("faults")
    builds = {seed: training_set(root / "builds" / f"b{seed}", seed=seed) for seed in (1, 2, 3)}
    lab = Lab(root, builds, root / "template", {})
    lab.registry().snapshot(builds[1].directory, lineage=lineage(1))
    shutil.move(lab.work, lab.template)
    remotes = [lab.remote(), lab.remote("dvc-remote-2")]
    # uninterrupted references, each from the template
    lab.reset()
    lab.expected["v1"] = fingerprint(lab.repo, remotes)
    lab.registry().snapshot(builds[2].directory, lineage=lineage(2))
    lab.expected["v2"] = fingerprint(lab.repo, remotes)
    lab.registry().snapshot(builds[3].directory, lineage=lineage(3))
    lab.expected["v2+v3"] = fingerprint(lab.repo, remotes)
    lab.reset()
    lab.registry("dvc-remote-2").snapshot(builds[2].directory, lineage=lineage(2))
    lab.expected["v2 on a new remote"] = fingerprint(lab.repo, remotes)
    yield lab


PUBLISH_POINTS = [
    "registry.after_lock",
    "registry.after_copy",
    "registry.after_add",
    "registry.after_push",
    "registry.after_git_add",
    "registry.after_commit",
    "registry.after_tag",
]


@pytest.mark.parametrize("point", PUBLISH_POINTS)
def test_killed_publish_is_repaired_by_the_next(lab: Lab, point: str, tmp_path: Path) -> None:
    lab.reset()
    killed = publish_in_subprocess(lab, seed=2, kill_at=point)
    assert killed.returncode == KILLED, killed.stderr[-2000:]

    result = lab.registry().snapshot(lab.builds[2].directory, lineage=lineage(2))
    assert result.tag == "training_set@v2.0.0"
    assert fingerprint(lab.repo, [lab.remote()]) == lab.expected["v2"]
    assert_restorable(lab, tmp_path, {1: 1, 2: 2})


@pytest.mark.parametrize("point", PUBLISH_POINTS[:5])  # killed before its commit
def test_killed_publish_then_unchanged_data_leaves_no_trace(
    lab: Lab, point: str, tmp_path: Path
) -> None:
    """The rerun brings version 1's content again: no version, nothing of the killed one left."""
    lab.reset()
    assert publish_in_subprocess(lab, seed=2, kill_at=point).returncode == KILLED

    result = lab.registry().snapshot(lab.builds[1].directory, lineage=lineage(1))
    assert (result.created, result.tag) == (False, "training_set@v1.0.0")
    after = fingerprint(lab.repo, [])
    assert after == {**lab.expected["v1"], "remotes": {}}  # pushed objects may stay: unreferenced
    assert_restorable(lab, tmp_path, {1: 1})


def test_kill_between_commit_and_tag_then_different_data(lab: Lab, tmp_path: Path) -> None:
    """The operator's wedge: the retry brings new data. v2 keeps build 2, v3 is build 3."""
    lab.reset()
    assert publish_in_subprocess(lab, seed=2, kill_at="registry.after_commit").returncode == KILLED
    assert version_tags(lab.repo) == {1: "training_set@v1.0.0"}  # the commit has no tag yet

    rerun = publish_in_subprocess(lab, seed=3)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.strip() == "training_set@v3.0.0"
    assert fingerprint(lab.repo, [lab.remote()]) == lab.expected["v2+v3"]
    assert_restorable(lab, tmp_path, {1: 1, 2: 2, 3: 3})


def test_a_registry_wedged_by_the_old_code_is_unwedged(lab: Lab, tmp_path: Path) -> None:
    """Before the trailer: a commit titled `training_set v2: ...` whose tag never came."""
    lab.reset()
    assert publish_in_subprocess(lab, seed=2, kill_at="registry.after_commit").returncode == KILLED
    message = git(lab.repo, "log", "-1", "--format=%B").split("\n\nRefinery-Version:")[0]
    git(lab.repo, "commit", "--quiet", "--amend", "-m", message)
    wedged = git(lab.repo, "rev-parse", "HEAD")

    result = lab.registry().snapshot(lab.builds[2].directory, lineage=lineage(2))
    assert (result.created, result.tag, result.commit) == (False, "training_set@v2.0.0", wedged)
    assert git(lab.repo, "rev-parse", "HEAD") == wedged
    assert git(lab.repo, "status", "--porcelain") == ""
    assert_restorable(lab, tmp_path, {1: 1, 2: 2})


@pytest.mark.parametrize("point", ["registry.after_remote_push", "registry.after_remote_config"])
def test_killed_remote_change_is_completed_by_the_next(
    lab: Lab, point: str, tmp_path: Path
) -> None:
    lab.reset()
    killed = publish_in_subprocess(lab, seed=2, kill_at=point, remote="dvc-remote-2")
    assert killed.returncode == KILLED, killed.stderr[-2000:]

    lab.registry("dvc-remote-2").snapshot(lab.builds[2].directory, lineage=lineage(2))
    remotes = [lab.remote(), lab.remote("dvc-remote-2")]
    assert fingerprint(lab.repo, remotes) == lab.expected["v2 on a new remote"]
    assert_restorable(lab, tmp_path, {1: 1, 2: 2})


def test_failed_push_commits_nothing_and_a_foreign_remote_change_is_refused(
    lab: Lab, tmp_path: Path
) -> None:
    lab.reset()
    head = git(lab.repo, "rev-parse", "HEAD")
    tracked = (lab.repo / ".dvc" / "config").read_text()
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the remote's folder should be")
    bad = DvcRegistry(registry_dir=str(lab.repo), remote_url=str(blocker / "remote"))
    with pytest.raises(RegistryError, match="nothing was committed or tagged"):
        bad.snapshot(lab.builds[2].directory)
    assert git(lab.repo, "rev-parse", "HEAD") == head
    assert (lab.repo / ".dvc" / "config").read_text() == tracked
    assert git(lab.repo, "status", "--porcelain") == ""

    # someone points the remote elsewhere with DVC's own tool: refinery does not overwrite it
    moved = tmp_path / "moved-remote"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("dvc")),
            "remote",
            "modify",
            "storage",
            "url",
            str(moved),
        ],
        cwd=lab.repo,
        check=True,
        capture_output=True,
    )
    with pytest.raises(RegistryError, match="changed outside refinery") as refused:
        lab.registry().snapshot(lab.builds[2].directory)
    assert str(moved) in str(refused.value) and "dvc remote modify" in str(refused.value)
    assert version_tags(lab.repo) == {1: "training_set@v1.0.0"}
    # adopting it is a configuration change like any other
    adopted = DvcRegistry(registry_dir=str(lab.repo), remote_url=str(moved))
    assert adopted.snapshot(lab.builds[2].directory).tag == "training_set@v2.0.0"
    assert f"url = {moved}" in git(lab.repo, "show", "HEAD:.dvc/config")
    assert (moved / "files" / "md5").is_dir()


def test_concurrent_publishes_each_tag_describes_its_own_data(lab: Lab, tmp_path: Path) -> None:
    lab.reset()
    with exclusive_lock(lab.repo / LOCK_FILE, 10):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PUBLISH,
                    str(lab.repo),
                    str(lab.remote()),
                    str(lab.builds[seed].directory),
                    lineage(seed),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in (2, 3)
        ]
        for proc in procs:  # both are queued on the lock before either may go
            wait_for_line(proc, "Waiting for the registry lock")
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outcomes]
    published = {seed: out.strip() for seed, (out, _) in zip((2, 3), outcomes, strict=True)}
    assert sorted(published.values()) == ["training_set@v2.0.0", "training_set@v3.0.0"]
    tags = version_tags(lab.repo)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(lab.repo), str(clone)], check=True)
    for seed, tag in published.items():
        build = lab.builds[seed]
        number = next(n for n, t in tags.items() if t == tag)
        annotation = git(lab.repo, "tag", "-l", "--format=%(contents)", tag)
        assert read_metadata(number, lab.repo) == build.metadata
        assert build.metadata["content_md5"] in annotation and lineage(seed) in annotation
        assert md5s_of(checkout(number, tmp_path / tag, registry=clone)) == build.file_md5s
    assert git(lab.repo, "status", "--porcelain") == ""


def wait_for_line(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"process exited ({proc.wait()}) before logging {text!r}")


# -- through the real ml/training_dataset asset ------------------------------------------------


@pytest.fixture(scope="module")
def gold_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asset-lake")
    for offset in range(29):
        write_gold_day(root, START + timedelta(days=offset), seed=offset)
    history_start = LakePaths(root).partition_file(
        "silver", "events", str(START - timedelta(days=29))
    )
    write_parquet_atomic(pl.DataFrame({"event_id": ["e0"]}), history_start)
    return root


def materialize_in_subprocess(
    data_dir: Path, window_days: int, kill_at: str | None = None
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REFINERY_KILL_AT", "DAGSTER_HOME")}
    if kill_at:
        env["REFINERY_KILL_AT"] = kill_at
    return subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE, str(data_dir), str(window_days)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_concurrent_asset_runs_and_a_killed_one(gold_lake: Path, tmp_path: Path) -> None:
    """Two ml/training_dataset runs of different windows at once: each version is its own run's
    data. Then a run killed between commit and tag: the next run tags it, adds nothing."""
    data = tmp_path / "data"
    shutil.copytree(gold_lake, data)
    repo = LakePaths(data).registry
    DvcRegistry().rooted_at(LakePaths(data)).ensure_initialized()
    with exclusive_lock(repo / LOCK_FILE, 60):
        procs = {window: materialize_in_subprocess(data, window) for window in (24, 26)}
        for proc in procs.values():
            wait_for_line(proc, "Waiting for the registry lock")
    runs = {}
    for window, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        runs[window] = json.loads(out.strip().splitlines()[-1])
    assert sorted(r["version_tag"] for r in runs.values()) == [
        "training_set@v1.0.0",
        "training_set@v2.0.0",
    ]
    for window, run in runs.items():
        card = read_metadata(run["version_tag"], repo)
        assert card["content_md5"] == run["content_md5"]
        assert card["window"]["window_days"] == window
        annotation = git(repo, "tag", "-l", "--format=%(contents)", run["version_tag"])
        assert run["run_id"] in annotation and run["content_md5"] in annotation
    latest = max(runs.values(), key=lambda r: r["version_tag"])
    lake_copy = LakePaths(data).lake / "ml" / "training_dataset" / "metadata.json"
    assert json.loads(lake_copy.read_text()) == read_metadata(latest["version_tag"], repo)

    killed = materialize_in_subprocess(data, 28, kill_at="registry.after_commit")
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == KILLED, err[-3000:]
    rerun = materialize_in_subprocess(data, 28)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["version_tag"], result["new_version"]) == ("training_set@v3.0.0", False)
    tags = version_tags(repo)
    assert sorted(tags) == [1, 2, 3]
    versions = git(repo, "log", "--format=%s", "HEAD").splitlines()
    assert sum(s.startswith("training_set v") for s in versions) == 3
    v3 = read_metadata(3, repo)
    assert v3["window"]["window_days"] == 28 and v3["content_md5"] == result["content_md5"]
    # the rolled-forward tag carries the killed run's own message (its run id), not the rerun's
    annotation = git(repo, "tag", "-l", "--format=%(contents)", tags[3])
    assert annotation == git(repo, "log", "-1", "--format=%B", tags[3])
    assert result["run_id"] not in annotation and v3["content_md5"] in annotation
    assert git(repo, "status", "--porcelain") == ""
