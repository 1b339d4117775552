"""The DVC data registry with real git and DVC: versions, restores, locking, broken remotes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from refinery.assets.ml.profile import build_profile
from refinery.assets.ml.splits import (
    SplitSpec,
    WrittenTrainingSet,
    assign_split_dates,
    feature_columns,
    file_md5,
    split_examples,
    write_training_set,
)
from refinery.datasets import checkout, latest_version, list_versions, load_split, read_profile
from refinery.resources.registry import (
    DvcRegistry,
    RegistryError,
    dvc,
    git,
    parse_version,
    version_tags,
)

SPEC = SplitSpec(window_days=18, validation_days=1, test_days=2, gap_days=7)
START = date(2025, 4, 1)


def training_set(out_dir: Path, seed: int, upstream: dict | None = None) -> WrittenTrainingSet:
    """A small real training set; `seed` changes the data, `upstream` only the lineage."""
    rng = np.random.default_rng(seed)
    dates = [START + timedelta(days=i) for i in range(SPEC.window_days)]
    users = 8
    examples = pl.DataFrame(
        {
            "user_id": [f"u{u}" for _ in dates for u in range(users)],
            "as_of_date": [d for d in dates for _ in range(users)],
            "purchases_30d": rng.integers(0, 5, users * len(dates)),
            "country": rng.choice(["DE", "FR", "US"], users * len(dates)).tolist(),
            "label": rng.integers(0, 2, users * len(dates)).astype(np.int8),
        },
        schema_overrides={"purchases_30d": pl.Int64, "label": pl.Int8},
    )
    split_dates = assign_split_dates(dates, SPEC)
    splits = split_examples(examples, split_dates)
    features = [c["name"] for c in feature_columns(examples)]
    return write_training_set(
        out_dir,
        spec=SPEC,
        split_dates=split_dates,
        splits=splits,
        profile=build_profile(splits["train"], features),
        upstream=upstream or {"run": "test"},
    )


def md5s_of(directory: Path) -> dict[str, str]:
    return {p.name: file_md5(p) for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


@dataclass
class Published:
    root: Path
    registry: DvcRegistry
    first: WrittenTrainingSet
    second: WrittenTrainingSet
    tags: dict[int, str]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    root = tmp_path_factory.mktemp("registry")
    # a machine without any global git identity: the registry must bring its own
    no_global_git = pytest.MonkeyPatch()
    no_global_git.setenv("GIT_CONFIG_GLOBAL", str(root / "no-global-gitconfig"))
    no_global_git.setenv("GIT_CONFIG_NOSYSTEM", "1")
    registry = DvcRegistry(registry_dir=str(root / "registry"), remote_url=str(root / "dvc-remote"))
    first = training_set(root / "build-1", seed=1)
    one = registry.snapshot(first.directory, lineage="run one")
    second = training_set(root / "build-2", seed=2)
    two = registry.snapshot(second.directory, lineage="run two")
    assert (one.created, two.created) == (True, True)
    assert one.file_md5s == first.file_md5s and two.file_md5s == second.file_md5s
    yield Published(root, registry, first, second, version_tags(registry.path))
    no_global_git.undo()


def test_versions_are_tagged_and_listed(published: Published) -> None:
    assert published.tags == {1: "training_set@v1.0.0", 2: "training_set@v2.0.0"}
    versions = list_versions(published.registry.path)
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].rows == {
        name: published.second.metadata["splits"][name]["rows"]
        for name in ("train", "validation", "test")
    }
    assert versions[0].commit != versions[1].commit
    assert latest_version(published.registry.path) == "training_set@v2.0.0"
    assert read_profile(registry=published.registry.path) == read_profile(
        "v2", published.registry.path
    )
    assert read_profile("v1", published.registry.path) != read_profile(
        "v2", published.registry.path
    )
    annotation = git(published.registry.path, "tag", "-n20", "training_set@v1.0.0")
    assert "run one" in annotation and published.first.metadata["content_md5"] in annotation
    # the registry's own config: identity local, secrets file never tracked, artifact declared
    repo = published.registry.path
    assert git(repo, "config", "--local", "user.email") == "refinery@localhost"
    assert "type: dataset" in (repo / "dvc.yaml").read_text()
    assert git(repo, "status", "--porcelain") == ""


def test_both_versions_restore_byte_identical_from_a_fresh_clone(
    published: Published, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(published.registry.path), str(clone)], check=True)
    dvc(clone, "pull", "--quiet")
    assert md5s_of(clone / "datasets" / "training_set") == published.second.file_md5s

    for number, written in ((1, published.first), (2, published.second)):
        dest = checkout(f"v{number}", tmp_path / f"v{number}", registry=clone)
        assert md5s_of(dest) == written.file_md5s
    test_split = load_split("training_set@v1", "test", registry=clone)
    assert test_split.equals(pl.read_parquet(published.first.directory / "test.parquet"))


def test_unchanged_data_makes_no_new_version(published: Published, tmp_path: Path) -> None:
    repo = published.registry.path
    head = git(repo, "rev-parse", "HEAD")
    rebuilt = training_set(tmp_path / "rebuilt", seed=2, upstream={"run": "another run"})
    assert rebuilt.file_md5s["metadata.json"] != published.second.file_md5s["metadata.json"]
    result = published.registry.snapshot(rebuilt.directory, lineage="run three")
    assert not result.created
    assert result.tag == "training_set@v2.0.0"
    assert result.file_md5s == published.second.file_md5s  # what was published, not rebuilt
    assert git(repo, "rev-parse", "HEAD") == head
    assert version_tags(repo) == published.tags


def test_concurrent_snapshots_queue_instead_of_failing(
    published: Published, tmp_path: Path
) -> None:
    repo = tmp_path / "registry"
    shutil.copytree(published.registry.path, repo)
    registry = DvcRegistry(registry_dir=str(repo), remote_url=str(published.root / "dvc-remote"))
    builds = [training_set(tmp_path / f"build-{i}", seed=3) for i in range(2)]
    results, errors = [], []

    def publish(written: WrittenTrainingSet) -> None:
        try:
            results.append(registry.snapshot(written.directory))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(b,)) for b in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # unserialized, both would see v2 as latest and publish (or trip over DVC's lock)
    assert sorted(r.created for r in results) == [False, True]
    assert {r.tag for r in results} == {"training_set@v3.0.0"}
    assert sorted(version_tags(repo)) == [1, 2, 3]
    assert git(repo, "status", "--porcelain") == ""


def test_dvc_repo_lock_held_by_another_process_is_waited_for(
    published: Published, tmp_path: Path
) -> None:
    repo = tmp_path / "registry"
    shutil.copytree(published.registry.path, repo)
    registry = DvcRegistry(registry_dir=str(repo), remote_url=str(published.root / "dvc-remote"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); "
                "print('locked', flush=True); time.sleep(3.5); lock.close()"
            ),
            str(repo / ".dvc" / "tmp" / "lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = registry.snapshot(training_set(tmp_path / "build", seed=6).directory)
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert result.created and result.tag == "training_set@v3.0.0"
    assert waited > 2.5  # it really met the held lock (DVC alone gives up after 3 s)


def test_broken_remote_names_it_and_leaves_the_registry_consistent(
    published: Published, tmp_path: Path
) -> None:
    repo = tmp_path / "registry"
    shutil.copytree(published.registry.path, repo)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the remote's folder should be")
    broken = DvcRegistry(registry_dir=str(repo), remote_url=str(blocker / "remote"))
    changed = training_set(tmp_path / "changed", seed=5)

    with pytest.raises(RegistryError) as failure:
        broken.snapshot(changed.directory)
    message = str(failure.value)
    assert "remote 'storage'" in message and str(blocker / "remote") in message
    assert "nothing was committed or tagged" in message
    assert version_tags(repo) == published.tags
    assert git(repo, "status", "--porcelain") == ""
    assert md5s_of(repo / "datasets" / "training_set") == published.second.file_md5s

    fixed = DvcRegistry(registry_dir=str(repo), remote_url=str(tmp_path / "new-remote"))
    result = fixed.snapshot(changed.directory)
    assert (result.created, result.tag) == (True, "training_set@v3.0.0")
    assert (tmp_path / "new-remote" / "files" / "md5").is_dir()


def test_version_names_and_errors_are_friendly(published: Published, tmp_path: Path) -> None:
    assert [parse_version(v) for v in ("3", "v3", "training_set@v3", "training_set@v3.0.0")] == [
        3
    ] * 4
    with pytest.raises(RegistryError, match="not a training-set version"):
        parse_version("v3.1")
    with pytest.raises(RegistryError, match=r"v9 does not exist .*versions: v1, v2"):
        checkout("v9", tmp_path / "out", registry=published.registry.path)
    with pytest.raises(RegistryError, match="No data registry at"):
        list_versions(tmp_path / "nowhere")
    assert latest_version(tmp_path / "nowhere") is None
    assert read_profile(registry=tmp_path / "nowhere") is None


def test_s3_credentials_stay_out_of_git(tmp_path: Path) -> None:
    registry = DvcRegistry(
        registry_dir=str(tmp_path / "registry"),
        remote_url="s3://refinery-bucket/datasets",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="s3cr3t-example",
        endpoint_url="http://127.0.0.1:9000",
    )
    repo = registry.ensure_initialized()
    tracked = git(repo, "ls-files")
    assert ".dvc/config.local" not in tracked
    committed = (repo / ".dvc" / "config").read_text()
    assert "s3://refinery-bucket/datasets" in committed and "s3cr3t" not in committed
    local = (repo / ".dvc" / "config.local").read_text()
    assert "s3cr3t-example" in local and "http://127.0.0.1:9000" in local
    assert (repo / ".dvc" / "config.local").stat().st_mode & 0o777 == 0o600
    assert git(repo, "status", "--porcelain") == ""
