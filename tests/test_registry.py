"""The DVC data registry with real git and DVC: versions, restores, locking, broken remotes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
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
    LOCK_FILE,
    DvcRegistry,
    RegistryError,
    dvc,
    exclusive_lock,
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
def published(
    tmp_path_factory: pytest.TempPathFactory, git_without_global_config: None
) -> Published:
    # a machine without any global git identity: the registry must bring its own
    root = tmp_path_factory.mktemp("registry")
    registry = DvcRegistry(registry_dir=str(root / "registry"), remote_url=str(root / "dvc-remote"))
    first = training_set(root / "build-1", seed=1)
    one = registry.snapshot(first.directory, lineage="run one")
    second = training_set(root / "build-2", seed=2)
    two = registry.snapshot(second.directory, lineage="run two")
    assert (one.created, two.created) == (True, True)
    assert one.file_md5s == first.file_md5s and two.file_md5s == second.file_md5s
    return Published(root, registry, first, second, version_tags(registry.path))


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


def wait_until(what: str, condition, timeout: float = 60.0, alive=None) -> None:
    """Poll `condition` until true; fail if `alive()` turns false first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and not alive():
            pytest.fail(f"gave up waiting for {what}: the publish ended first")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


def test_concurrent_snapshots_queue_instead_of_failing(
    published: Published, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two publishes at once, made to meet: the registry lock is held until both are seen
    queued on it, then released; each then publishes in turn."""
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

    def queued_threads() -> set[int]:
        return {
            record.thread
            for record in caplog.records
            if record.getMessage().startswith("Waiting for the registry lock")
        }

    caplog.set_level(logging.INFO, logger="refinery.registry")
    threads = [threading.Thread(target=publish, args=(b,)) for b in builds]
    with exclusive_lock(repo / LOCK_FILE, 10):
        for thread in threads:
            thread.start()
        wait_until(
            "both publishes to queue on the registry lock",
            lambda: queued_threads() == {thread.ident for thread in threads},
            alive=lambda: all(thread.is_alive() for thread in threads),
        )
        assert version_tags(repo) == published.tags  # nothing published while it is held
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    # unserialized, both would see v2 as latest and publish (or trip over DVC's lock)
    assert sorted(r.created for r in results) == [False, True]
    assert {r.tag for r in results} == {"training_set@v3.0.0"}
    assert sorted(version_tags(repo)) == [1, 2, 3]
    assert git(repo, "status", "--porcelain") == ""


class OpensOf:
    """Counts this process's opens of one file, through Python's audit events ("open"): an
    observation of what the code does, nothing of it replaced. One audit hook is installed for
    the session (hooks cannot be removed); it only counts while a path is watched."""

    watched: str | None = None
    count = 0
    _installed = False

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if event != "open" or cls.watched is None or not args:
            return
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if (
                path.endswith(os.path.basename(cls.watched))
                and os.path.realpath(path) == cls.watched
            ):
                cls.count += 1

    def __init__(self, path: Path) -> None:
        if not OpensOf._installed:
            sys.addaudithook(OpensOf._hook)
            OpensOf._installed = True
        self.path = os.path.realpath(path)

    def __enter__(self) -> type[OpensOf]:
        OpensOf.watched, OpensOf.count = self.path, 0
        return OpensOf

    def __exit__(self, *exc: object) -> None:
        OpensOf.watched = None


# holds DVC's repo lock (zc.lockfile, as DVC takes it) until a line arrives on stdin
HOLD_DVC_LOCK = """
import sys, zc.lockfile
lock = zc.lockfile.LockFile(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
lock.close()
print("released", flush=True)
"""


def test_dvc_repo_lock_held_by_another_process_is_waited_for(
    published: Published, tmp_path: Path
) -> None:
    """Another process holds DVC's repo lock for longer than DVC itself waits (7 tries over 3 s):
    the publish is seen trying the lock again and again while nothing is published, and
    publishes once the holder lets go."""
    from dvc.lock import DEFAULT_TIMEOUT

    repo = tmp_path / "registry"
    shutil.copytree(published.registry.path, repo)
    registry = DvcRegistry(registry_dir=str(repo), remote_url=str(published.root / "dvc-remote"))
    build = training_set(tmp_path / "build", seed=6)
    lock_file = repo / ".dvc" / "tmp" / "lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DVC_LOCK, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    outcome: dict = {}

    def publish() -> None:
        try:
            outcome["result"] = registry.snapshot(build.directory)
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            outcome["error"] = exc

    publisher = threading.Thread(target=publish)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with OpensOf(lock_file) as opens:
            started = time.monotonic()
            publisher.start()
            # DVC alone tries 7 times and gives up; more tries mean refinery kept waiting
            wait_until(
                "the publish to retry DVC's lock", lambda: opens.count > 7, alive=publisher.is_alive
            )
            assert time.monotonic() - started >= DEFAULT_TIMEOUT * 0.9
            assert publisher.is_alive() and "error" not in outcome
            assert version_tags(repo) == published.tags
            assert lock_file.read_text().split() == [str(holder.pid)]  # still the holder's
            holder.stdin.write("release\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
            publisher.join(timeout=300)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)
    assert not publisher.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].created and outcome["result"].tag == "training_set@v3.0.0"
    assert sorted(version_tags(repo)) == [1, 2, 3]


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
